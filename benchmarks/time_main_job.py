"""Wall time of the README's main job, ``bash examples/run_cpu_tiny.sh`` (RL-CoMM stage 2, 2 steps, CPU).

``python benchmarks/time_main_job.py [--result FILE] [OVERRIDES...]`` runs the script once from the
repository root, as a user would, and reports its wall time beside the load average at its start and end,
and whether the tiny models and data were already cached (``AVCONFUSE_TINY_DIR``, or the default cache):
a first run builds them. The committed run is ``benchmarks/results/main_job_time.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO

from verl_avconfuse.experiments.provenance import result_record, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", type=Path, default=None, help="write the time with its provenance here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to the script")
    args = parser.parse_args(argv)
    record = result_record(["python", "benchmarks/time_main_job.py", *(sys.argv[1:] if argv is None else argv)])
    from verl_avconfuse.tiny.resolver import tiny_cache_dir

    tiny = tiny_cache_dir()
    cached = (tiny / "models" / "omni_thinker" / "config.json").is_file()
    with tempfile.TemporaryDirectory() as ref:
        command = [
            "bash",
            str(REPO / "examples" / "run_cpu_tiny.sh"),
            f"avconfuse.reference.cache_dir={ref}",
            *args.overrides,
        ]
        load_start = os.getloadavg()[0]
        start = time.monotonic()
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        seconds = time.monotonic() - start
    load_end = os.getloadavg()[0]
    print(
        f"{' '.join(command)}: exit {result.returncode}, {seconds:.0f} s ({int(seconds // 60)}:{int(seconds % 60):02d}), "
        f"load {load_start:.2f} -> {load_end:.2f}, tiny assets {'cached' if cached else 'built in this run'}"
    )
    if result.returncode != 0:
        print(result.stdout[-3000:] + result.stderr[-3000:])
        return 1
    if args.result is not None:
        values = {"wall_s": round(seconds, 1), "tiny_assets_cached": cached, "returncode": result.returncode}
        print(f"result: {write_result(args.result, record, values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
