"""Evaluation: metric arithmetic on hand-written replies, the tiny Omni thinker end to end, resumability,
and the OpenAI-compatible backend against a real HTTP server on 127.0.0.1 running the tiny thinker."""

from __future__ import annotations

import base64
import json
import math
import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from verl_avconfuse.evaluation.backends import (
    EvalRequest,
    OpenAIBackend,
    OpenAIBackendError,
    PredictionsBackend,
    load_backend,
    log_prob_ratio,
)
from verl_avconfuse.evaluation.report import markdown_report
from verl_avconfuse.evaluation.runner import evaluate
from verl_avconfuse.evaluation.tasks import TASKS

from fixtures.datasets import (
    AVHBENCH_JSON_DIR,
    AVHBENCH_VIDEOS,
    AVQA_JSON,
    AVQA_VIDEOS,
    MUSIC_AVQA_JSON,
    MUSIC_AVQA_VIDEOS,
    write_clips,
)

WELL_FORMED = "<a-think> I hear two violins. </a-think> <v-think> I see two violinists. </v-think> <answer> 2 </answer>"

#: Hand-written replies for tests/fixtures/music_avqa/avqa-test.json, with the grade each must get.
MUSIC_AVQA_REPLIES = {
    "00000001/1": (WELL_FORMED, True),  # Audio/Counting, "two": digits equal number words
    "00000001/2": ("Yes, the guitar is louder.", True),  # Audio/Comparative: no tags -> whole reply, "Yes," polarity
    "00000002/3": ("<answer>four</answer>", False),  # Visual/Counting
    "00000002/4": ("<answer>the left</answer>", True),  # Visual/Location: leading article dropped
    "00000003/5": ("<answer>no</answer>", False),  # AV/Existential
    "00000003/6": ("<answer>left</answer>", True),  # AV/Location
    "00000001/7": ("<answer>two</answer>", True),  # AV/Counting
    "00000002/8": ("<answer>No.</answer>", True),  # AV/Comparative
    "00000003/9": ("<answer>acoustic guitar</answer>", True),  # AV/Temporal: "acoustic_guitar"
    "00000002/11": ("<answer>piano</answer>", False),  # AV/Existential, truth "no": never a substring match
    "00000003/12": ("", False),  # Audio/Counting: an empty reply
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("clips"), MUSIC_AVQA_VIDEOS + AVQA_VIDEOS + AVHBENCH_VIDEOS)


def _predictions(tmp_path: Path, replies: dict[str, str]) -> Path:
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps({"id": k, "prediction": v}) + "\n" for k, v in replies.items()))
    return path


# --------------------------------------------------------------------------------- metric arithmetic


def test_music_avqa_table_is_the_hand_computed_one(tmp_path, clips):
    backend = PredictionsBackend(_predictions(tmp_path, {k: r for k, (r, _) in MUSIC_AVQA_REPLIES.items()}))
    result = evaluate(TASKS["music-avqa"], backend, MUSIC_AVQA_JSON, clips, tmp_path / "out", progress=False)
    graded = {d["id"]: d["correct"] for d in result["docs"]}
    assert graded == {k: right for k, (_, right) in MUSIC_AVQA_REPLIES.items()}
    m = result["metrics"]
    expected = {
        "Audio/Counting": (1, 2),
        "Audio/Comparative": (1, 1),
        "Audio/Avg": (2, 3),  # over questions, not the mean of the two type accuracies (75)
        "Visual/Counting": (0, 1),
        "Visual/Location": (1, 1),
        "Visual/Avg": (1, 2),
        "Audio-Visual/Existential": (0, 2),
        "Audio-Visual/Location": (1, 1),
        "Audio-Visual/Counting": (1, 1),
        "Audio-Visual/Comparative": (1, 1),
        "Audio-Visual/Temporal": (1, 1),
        "Audio-Visual/Avg": (4, 6),
        "Overall": (7, 11),
    }
    for key, (correct, n) in expected.items():
        assert (m[key]["correct"], m[key]["n"]) == (correct, n), key
        assert m[key]["accuracy"] == pytest.approx(100 * correct / n), key
    assert (m["format_rate"]["well_formed"], m["format_rate"]["n"]) == (1, 11)
    table = (tmp_path / "out" / "music-avqa.md").read_text()
    assert (
        "| 50.00 | 100.00 | 66.67 | 0.00 | 100.00 | 50.00 | 0.00 | 100.00 | 100.00 | 100.00 | 100.00 | 66.67 | 63.64 |"
        in table
    )
    saved = json.loads((tmp_path / "out" / "music-avqa.results.json").read_text())
    assert saved["metrics"] == m and saved["n_docs"] == 11


def test_avqa_accuracy_overall_and_per_relation(tmp_path, clips):
    replies = {
        "101": "<answer>C</answer>",  # truth "car" = C
        "102": "<answer>B. street</answer>",  # truth "street" = A: letter and text disagree -> wrong
        "103": "Rowing",  # no tags: the whole reply
        "104": "<answer>(d)</answer>",  # truth "a paddle" = A
    }
    result = evaluate(TASKS["avqa"], PredictionsBackend(_predictions(tmp_path, replies)), AVQA_JSON, clips, tmp_path)
    m = result["metrics"]
    assert [d["correct"] for d in result["docs"]] == [True, False, True, False]
    assert m["Overall"] == {"accuracy": 50.0, "correct": 2, "n": 4}
    assert m["relation/Both"]["correct"] == 1 and m["relation/View"]["correct"] == 1


def test_avhbench_accuracy_precision_recall_f1_and_yes_rate(tmp_path, clips):
    replies = {
        "00191#0": "Yes",  # V->A, truth yes: tp
        "00191#1": "yes",  # V->A, truth no: fp
        "00191#2": "<answer>no</answer>",  # A->V, truth yes: fn
        "00191#3": "I am not sure.",  # A->V, truth no: neither yes nor no -> wrong
        "00191#4": "<answer>Yes</answer>",  # AV matching on the real clip, truth yes: tp
        "00191_swap#0": "<answer> no </answer>",  # AV matching on the swapped clip, truth no: tn
    }
    result = evaluate(
        TASKS["avhbench"], PredictionsBackend(_predictions(tmp_path, replies)), AVHBENCH_JSON_DIR, clips, tmp_path
    )
    m = result["metrics"]
    v2a, a2v, match = m["V->A hallucination"], m["A->V hallucination"], m["AV matching"]
    assert (v2a["tp"], v2a["fp"], v2a["tn"], v2a["fn"]) == (1, 1, 0, 0)
    assert v2a["accuracy"] == 50.0 and v2a["precision"] == 50.0 and v2a["recall"] == 100.0
    assert v2a["f1"] == pytest.approx(200 / 3) and v2a["yes_rate"] == 100.0
    assert (a2v["accuracy"], a2v["precision"], a2v["recall"], a2v["f1"], a2v["yes_rate"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert a2v["neither"] == 1 and a2v["fn"] == 1
    assert (match["accuracy"], match["precision"], match["recall"], match["f1"], match["yes_rate"]) == (
        100.0,
        100.0,
        100.0,
        100.0,
        50.0,
    )
    assert "| 0.00 | 50.00 | 100.00 |" in (tmp_path / "avhbench.md").read_text()


def test_predictions_backend_names_the_missing_ids(tmp_path):
    backend = PredictionsBackend(_predictions(tmp_path, {"a": "yes"}))
    with pytest.raises(ValueError, match=r"no prediction for 2 of the 3 questions \(ids 'b', 'c'\)"):
        backend.generate([EvalRequest(i, "q") for i in ("a", "b", "c")])
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "prediction": "x"}\n{"id": "a", "prediction": "y"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: id 'a' appears again with a different prediction"):
        PredictionsBackend(tmp_path / "bad.jsonl")


def test_backend_specs():
    with pytest.raises(
        ValueError, match="--backend sglang:/models/x: expected one of hf:MODEL_DIR, vllm:MODEL_DIR, openai:URL#MODEL"
    ):
        load_backend("sglang:/models/x")
    with pytest.raises(ValueError, match="--backend vllm:/models/x: no such folder"):
        load_backend("vllm:/models/x")
    with pytest.raises(ValueError, match="expected openai:URL#MODEL"):
        load_backend("openai:http://127.0.0.1:8000/v1")
    backend = load_backend("openai:http://127.0.0.1:8000#qwen-omni")
    assert backend.endpoint == "http://127.0.0.1:8000/v1/chat/completions" and backend.model == "qwen-omni"
    assert log_prob_ratio({"yes": math.log(0.3), "no": math.log(0.1)}, "yes", "no") == pytest.approx(0.75)


# ------------------------------------------------------------------------ the cache and resuming


def test_a_cut_last_line_is_dropped_and_only_the_rest_is_asked(tmp_path, clips):
    replies = {"101": "C", "102": "A", "103": "B", "104": "A"}
    backend = PredictionsBackend(_predictions(tmp_path, replies))
    out = tmp_path / "out"
    out.mkdir()
    cache = out / "avqa.predictions.jsonl"
    line = lambda i, p: json.dumps({"id": i, "prediction": p, "backend": backend.name}) + "\n"  # noqa: E731
    cache.write_text(line("101", "C") + line("102", "A") + '{"id": "103", "predic')  # killed mid-line
    result = evaluate(TASKS["avqa"], backend, AVQA_JSON, clips, out, progress=False)
    assert result["generated"] == 2 and result["metrics"]["Overall"]["correct"] == 4
    assert [json.loads(x)["id"] for x in cache.read_text().splitlines()] == ["101", "102", "103", "104"]
    (tmp_path / "x").mkdir()
    other = PredictionsBackend(_predictions(tmp_path / "x", replies))
    with pytest.raises(ValueError, match="written by backend 'jsonl:.*predictions.jsonl', this run uses"):
        evaluate(TASKS["avqa"], other, AVQA_JSON, clips, out, progress=False)


class CountingBackend:
    """A real backend, recording which request ids it was asked for."""

    def __init__(self, backend):
        self.backend, self.name, self.asked = backend, backend.name, []

    def generate(self, requests):
        self.asked += [r.id for r in requests]
        return self.backend.generate(requests)


@pytest.fixture(scope="module")
def omni(tiny_asset):
    from verl_avconfuse.evaluation.backends import HFOmniBackend

    return HFOmniBackend(tiny_asset("models/omni_thinker"), device="cpu", batch_size=1, max_frames=4)


def test_tiny_thinker_run_resumes_where_a_limited_run_stopped(omni, clips, tmp_path):
    task, out = TASKS["music-avqa"], tmp_path / "out"
    backend = CountingBackend(omni)
    first = evaluate(
        task, backend, MUSIC_AVQA_JSON, clips, out, limit=4, batch_size=3, max_new_tokens=24, progress=False
    )
    assert first["generated"] == 4 and first["n_docs"] == 4
    assert backend.asked == ["00000001/1", "00000001/2", "00000002/3", "00000002/4"]
    cached = (out / "music-avqa.predictions.jsonl").read_text()
    backend.asked = []
    full = evaluate(task, backend, MUSIC_AVQA_JSON, clips, out, batch_size=3, max_new_tokens=24, progress=False)
    assert full["generated"] == 7 and full["n_docs"] == 11
    assert backend.asked == [k for k in MUSIC_AVQA_REPLIES][4:]  # only the remainder, in order
    assert (out / "music-avqa.predictions.jsonl").read_text().startswith(cached)
    # the metrics are the arithmetic of the cached replies, whatever the tiny model said
    docs = {d["id"]: d for d in full["docs"]}
    assert all(isinstance(d["prediction"], str) for d in docs.values())
    assert full["metrics"]["Overall"]["correct"] == sum(d["correct"] for d in docs.values())


@pytest.mark.parametrize("in_video", [False, True], ids=["audio-item", "audio-in-video"])
def test_batched_generation_equals_one_request_at_a_time(tiny_asset, clips, in_video):
    from verl_avconfuse.evaluation.backends import HFOmniBackend

    backend = HFOmniBackend(
        tiny_asset("models/omni_thinker"), device="cpu", batch_size=1, max_frames=4, use_audio_in_video=in_video
    )
    requests = [
        EvalRequest("a", "Is there a trumpet?", str(clips / "00000001.mp4"), str(clips / "00000001.mp4"), 16),
        EvalRequest("b", "How many instruments are playing here?", str(clips / "00000002.mp4"), None, 16),
        EvalRequest("c", "Where?", str(clips / "vid_a_000010.mp4"), str(clips / "vid_a_000010.mp4"), 8),
    ]
    alone = backend.generate(requests)
    backend.batch_size = 3
    assert backend.generate(requests) == alone and all(isinstance(r, str) for r in alone)


def test_next_token_logprobs_chain_rule_and_greedy_choice(omni, clips):
    request = EvalRequest("a", "Is there a violin?", str(clips / "00000001.mp4"), str(clips / "00000001.mp4"), 4)
    reply = omni.generate([request])[0]
    first_token = omni.tokenizer.decode(omni.tokenizer.encode(reply, add_special_tokens=False)[:1])
    single = omni.next_token_logprobs(request, "", [first_token, "yes", "no"])
    # greedy decoding picked the most likely first token
    assert single[first_token] >= max(single["yes"], single["no"])
    both = omni.next_token_logprobs(request, "<answer>", ["yes no"])
    yes = omni.next_token_logprobs(request, "<answer>", ["yes"])["yes"]
    then_no = omni.next_token_logprobs(request, "<answer>yes", [" no"])[" no"]
    assert both["yes no"] == pytest.approx(yes + then_no, abs=1e-4)
    p_yes, p_no = math.exp(single["yes"]), math.exp(single["no"])
    assert log_prob_ratio(single, "yes", "no") == pytest.approx(p_yes / (p_yes + p_no), rel=1e-9)


# --------------------------------------------------------------------------- the OpenAI backend


class _ChatServer(ThreadingHTTPServer):
    """``/v1/chat/completions`` on 127.0.0.1 answered by the tiny Omni thinker with the sent media."""

    def __init__(self, backends, api_key, scratch: Path):
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.backends, self.api_key = backends, api_key
        self.lock = threading.Lock()
        self.bodies: list[dict] = []
        self.fail_next: list[int] = []
        self.decoded: list[dict] = []
        self.scratch = scratch  # media sent inline are written here


class _ChatHandler(BaseHTTPRequestHandler):
    server: _ChatServer

    def log_message(self, *args):  # keep the test output clean
        pass

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _media_file(self, url: str, suffix: str) -> str:
        if url.startswith("file://"):
            return urllib.parse.unquote(urllib.parse.urlparse(url).path)
        header, _, data = url.partition(",")
        assert header.startswith("data:") and header.endswith(";base64")
        path = self.server.scratch / f"{len(os.listdir(self.server.scratch))}{suffix}"
        path.write_bytes(base64.b64decode(data))
        return str(path)

    def do_POST(self):
        server = self.server
        if self.path != "/v1/chat/completions":
            return self._reply(404, {"error": {"message": f"no route {self.path}"}})
        if self.headers.get("Authorization") != f"Bearer {server.api_key}":
            return self._reply(401, {"error": {"message": "invalid API key"}})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.bodies.append(body)
            if server.fail_next:
                return self._reply(server.fail_next.pop(0), {"error": {"message": "try again"}})
            if body["model"] != "tiny-omni":
                return self._reply(400, {"error": {"message": f"model {body['model']!r} is not served"}})
            video = audio = None
            text = ""
            for part in body["messages"][0]["content"]:
                if part["type"] == "video_url":
                    video = self._media_file(part["video_url"]["url"], ".mp4")
                elif part["type"] == "audio_url":
                    audio = self._media_file(part["audio_url"]["url"], ".wav")
                elif part["type"] == "input_audio":
                    audio = str(server.scratch / f"{len(os.listdir(server.scratch))}.wav")
                    Path(audio).write_bytes(base64.b64decode(part["input_audio"]["data"]))
                elif part["type"] == "text":
                    text = part["text"]
            server.decoded.append({"video": video, "audio": audio})
            in_video = bool(body.get("mm_processor_kwargs", {}).get("use_audio_in_video", False))
            request = EvalRequest("srv", text, video, None if in_video else audio, body["max_tokens"])
            reply = server.backends[in_video].generate([request])[0]
        return self._reply(
            200,
            {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}],
            },
        )


@pytest.fixture(scope="module")
def chat_server(omni, tiny_asset, tmp_path_factory):
    from verl_avconfuse.evaluation.backends import HFOmniBackend

    in_video = HFOmniBackend(
        tiny_asset("models/omni_thinker"), device="cpu", batch_size=1, max_frames=4, use_audio_in_video=True
    )
    server = _ChatServer({False: omni, True: in_video}, "sk-test-7f3a", tmp_path_factory.mktemp("chat_server"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _requests(clips):
    return [
        EvalRequest("a", "Is there a violin?", str(clips / "00000001.mp4"), str(clips / "00000001.mp4"), 12),
        EvalRequest(
            "b", "What is making the sound?", str(clips / "vid_a_000010.mp4"), str(clips / "vid_a_000010.mp4"), 12
        ),
    ]


def test_openai_backend_over_http_replies_as_the_local_model(chat_server, omni, clips, monkeypatch):
    monkeypatch.setenv("AVCONF_TEST_KEY", chat_server.api_key)
    url = f"http://127.0.0.1:{chat_server.server_port}/v1"
    backend = OpenAIBackend(url, "tiny-omni", api_key_env="AVCONF_TEST_KEY", concurrency=2)
    requests = _requests(clips)
    assert backend.generate(requests) == omni.generate(requests)
    sent = chat_server.bodies[-1]
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 12 and sent["model"] == "tiny-omni"
    assert [p["type"] for p in sent["messages"][0]["content"]] == ["video_url", "audio_url", "text"]
    # the key is used, never kept: not on the backend, not in what it sends besides the header
    assert chat_server.api_key not in json.dumps(vars(backend)) and chat_server.api_key not in json.dumps(sent)


def test_openai_backend_audio_in_video_and_base64_media(chat_server, clips, monkeypatch):
    from verl_avconfuse.media import load_audio

    monkeypatch.setenv("AVCONF_TEST_KEY", chat_server.api_key)
    url = f"http://127.0.0.1:{chat_server.server_port}"
    in_video = OpenAIBackend(url, "tiny-omni", api_key_env="AVCONF_TEST_KEY", use_audio_in_video=True)
    requests = _requests(clips)
    assert in_video.generate(requests) == chat_server.backends[True].generate(requests)
    assert chat_server.bodies[-1]["mm_processor_kwargs"] == {"use_audio_in_video": True}
    assert [p["type"] for p in chat_server.bodies[-1]["messages"][0]["content"]] == ["video_url", "text"]

    inline = OpenAIBackend(url, "tiny-omni", api_key_env="AVCONF_TEST_KEY", media="base64")
    (reply,) = inline.generate(requests[:1])
    assert isinstance(reply, str)
    decoded = chat_server.decoded[-1]
    assert Path(decoded["video"]).read_bytes() == (clips / "00000001.mp4").read_bytes()
    sent, original = load_audio(decoded["audio"]), load_audio(clips / "00000001.mp4")
    assert sent.shape == original.shape and np.abs(sent - original).max() < 1e-4  # 16-bit PCM wav


def test_openai_backend_retries_server_errors_but_not_client_errors(chat_server, clips, monkeypatch):
    monkeypatch.setenv("AVCONF_TEST_KEY", chat_server.api_key)
    url = f"http://127.0.0.1:{chat_server.server_port}/v1"
    backend = OpenAIBackend(url, "tiny-omni", api_key_env="AVCONF_TEST_KEY", max_retries=2)
    before = len(chat_server.bodies)
    chat_server.fail_next[:] = [503, 429]
    (reply,) = backend.generate(_requests(clips)[:1])
    assert len(chat_server.bodies) - before == 3 and isinstance(reply, str)

    wrong_model = OpenAIBackend(url, "gpt-x", api_key_env="AVCONF_TEST_KEY", max_retries=2)
    before = len(chat_server.bodies)
    with pytest.raises(OpenAIBackendError, match=r"request 'a' .*HTTP 400: .*model 'gpt-x' is not served"):
        wrong_model.generate(_requests(clips)[:1])
    assert len(chat_server.bodies) - before == 1
    monkeypatch.setenv("AVCONF_TEST_KEY", "sk-wrong-key")
    with pytest.raises(OpenAIBackendError, match="HTTP 401") as error:
        backend.generate(_requests(clips)[:1])
    assert "sk-wrong-key" not in str(error.value)


# ------------------------------------------------------------------------------------------ CLI


def test_avconfuse_eval_command(tmp_path, clips, monkeypatch, capsys):
    from verl_avconfuse import cli

    monkeypatch.setitem(cli.COMMANDS, "eval", ("verl_avconfuse.evaluation.cli", "evaluate a model"))
    predictions = _predictions(tmp_path, {"101": "C", "102": "street", "103": "A", "104": "A"})
    argv = ["eval", "avqa", "--data", str(AVQA_JSON), "--video-dir", str(clips), "--backend", f"jsonl:{predictions}"]
    assert cli.main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| match | Accuracy | Which |" in printed and "\n| strict | 75.00 | 100.00 | 100.00 | 0.00 | – |" in printed
    result = json.loads((tmp_path / "out" / "avqa.results.json").read_text())
    assert result["metrics"]["Overall"]["correct"] == 3
    assert markdown_report(result, TASKS["avqa"].columns).count("75.00") >= 1
    assert cli.main([*argv, "--out", str(tmp_path / "o3"), "--no-progress", "--match", "both"]) == 0
    assert "\n| release | " in capsys.readouterr().out
    assert cli.main([*argv[:-1], "jsonl:/nonexistent.jsonl", "--out", str(tmp_path / "o2")]) == 2  # an input error
    assert "--backend jsonl:/nonexistent.jsonl: no such predictions file" in capsys.readouterr().err
