from verl_avconfuse.experiments.console_metrics import parse_console_metrics


def test_reads_verls_console_step_lines():
    log = (
        "noise\n"
        "(TaskRunner pid=1) step:1 - actor/grad_norm:0.5 - training/num_turns/min:np.int32(2) - note:abc - x:1e-3\n"
        "step:2 - actor/grad_norm:nan - critic/score/mean:-1.25\n"
    )
    steps = parse_console_metrics(log)
    assert steps[1] == {"actor/grad_norm": 0.5, "training/num_turns/min": 2.0, "x": 0.001}
    assert steps[2]["critic/score/mean"] == -1.25 and steps[2]["actor/grad_norm"] != steps[2]["actor/grad_norm"]
