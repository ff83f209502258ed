"""``avconfuse preflight``: where a run's roles would go, before anything starts.

The config is composed by verl's own entry point (``python -m verl.trainer.main_ppo OVERRIDES --cfg job``),
so it is exactly the config a run would get; the cluster is either a Ray cluster to connect to
(``--address``) or one on paper (``--cluster 2x8``). The trainer runs the same check at start-up.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

EXIT_OK, EXIT_UNSCHEDULABLE, EXIT_USAGE = 0, 1, 2


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--cluster",
        metavar="NODESxGPUS",
        help="a cluster on paper, e.g. 1x8 or 2x8 (16 CPUs per GPU); default: the Ray cluster at --address",
    )
    where.add_argument("--address", default="auto", help="Ray cluster to read (as `ray.init(address=...)`)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help="verl/Hydra overrides as for main_ppo, e.g. +recipe=avconfuse trainer.n_gpus_per_node=8",
    )


def compose_job_config(overrides: list[str]) -> dict:
    """The job config verl's ``main_ppo`` composes from these overrides (unresolved)."""
    import yaml

    result = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *overrides, "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise ValueError(f"verl could not compose the config: {lines[-1] if lines else 'no message'}")
    return yaml.safe_load(result.stdout)


def run(command: str, args: argparse.Namespace) -> int:
    from verl_avconfuse.integration.placement import (
        cluster_nodes,
        plan_layout,
        preflight,
        preflight_fixes,
        simulated_nodes,
    )

    try:
        config = compose_job_config(list(args.overrides))
        layout = plan_layout(config)
        nodes = simulated_nodes(args.cluster) if args.cluster else None
    except ValueError as error:
        print(f"avconfuse preflight: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if nodes is None:
        import ray

        try:
            ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as error:
            print(
                f"avconfuse preflight: error: no Ray cluster at {args.address!r} ({error}); start one "
                "(`ray start --head --num-gpus=8`) or give --cluster NODESxGPUS",
                file=sys.stderr,
            )
            return EXIT_USAGE
        try:
            nodes = cluster_nodes()
        finally:
            ray.shutdown()
    report = preflight(layout, nodes, source=f"simulated {args.cluster}" if args.cluster else "available now")
    print(report.render())
    if not report.ok:
        print(f"  fix: {preflight_fixes(layout)}")
        return EXIT_UNSCHEDULABLE
    return EXIT_OK
