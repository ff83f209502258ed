"""Ordinary mistakes on the command line: one line naming what is wrong, the documented exit status, no
traceback, checked before any model loads, and nothing lost."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from verl_avconfuse import cli
from verl_avconfuse.bench.muted import Piece, _chosen_sources, instrument_name, load_muted_manifest
from verl_avconfuse.bench.schemas import BenchFormatError, load_questions, published_questions
from verl_avconfuse.errors import EXIT_FAILED, EXIT_USAGE, InputError, RunFailed, describe, exit_code
from verl_avconfuse.media import tone, write_synthetic_video

from conftest import WAV_16K, free_port


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def muted_clips(tmp_path_factory) -> Path:
    """The first three published muted questions and a 1 s clip with sound for each."""
    folder = tmp_path_factory.mktemp("muted")
    base = write_synthetic_video(folder / "_base.mp4", duration_s=1.0, fps=4, audio=tone(440.0, 1.0), seed=3)
    items = load_questions(published_questions("muted"), "muted")[:3]
    for item in items:
        shutil.copy(base, folder / f"{item['video_id']}.mp4")
    (folder / "questions.json").write_text(json.dumps(items))
    return folder


def _predictions(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "prediction": "<answer>no</answer>"}) + "\n" for i in ids))
    return path


def _doc_ids(folder: Path) -> list[str]:
    from verl_avconfuse.evaluation.tasks import get_task

    docs, _ = get_task("avconfuse-muted").load_docs(folder / "questions.json", folder, _load_options())
    return [d.id for d in docs]


def _load_options():
    from verl_avconfuse.evaluation.tasks import LoadOptions

    return LoadOptions()


# --------------------------------------------------------------------------------------- exit codes


def test_exit_codes_by_kind_of_error():
    assert exit_code(InputError("x")) == exit_code(FileNotFoundError("x")) == exit_code(ValueError("x")) == 2
    assert exit_code(ModuleNotFoundError("No module named 'vllm'", name="vllm")) == EXIT_USAGE
    assert exit_code(RunFailed("x")) == exit_code(RuntimeError("x")) == EXIT_FAILED
    assert exit_code(KeyboardInterrupt()) == 130
    assert describe(KeyError("id")) == "missing key 'id'"
    assert describe(RuntimeError("boom\n  at line 2")) == "RuntimeError: boom at line 2"  # one line


def test_a_bug_is_one_line_with_the_debug_hint_and_debug_shows_the_traceback(capsys, monkeypatch):
    from verl_avconfuse.tiny import cli as tiny_cli

    def broken(command, args):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(tiny_cli, "run", broken)
    code, _, err = run_cli(capsys, "tiny-asset", "models/qwen2")
    assert code == 1
    assert_one_line(err, "avconfuse tiny-asset: error: RuntimeError: something nobody planned for", "--debug")
    with pytest.raises(RuntimeError, match="nobody planned"):
        cli.main(["tiny-asset", "models/qwen2", "--debug"])
    monkeypatch.setenv("AVCONFUSE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="nobody planned"):
        cli.main(["tiny-asset", "models/qwen2"])


# --------------------------------------------------------------------------- the mistakes


def test_eval_with_a_model_folder_that_does_not_exist(capsys, muted_clips, tmp_path):
    for command in (["eval", "avconfuse-muted", "--data"], ["bench", "eval", "--setting", "muted", "--questions"]):
        code, _, err = run_cli(
            capsys, *command, muted_clips / "questions.json", "--video-dir", muted_clips,
            "--backend", "hf:/nonexistent", "--out", tmp_path / "o",
        )  # fmt: skip
        assert code == EXIT_USAGE  # the same status and form from eval and its bench alias
        assert_one_line(err, "error: --backend hf:/nonexistent: no such folder", "extract-thinker")
    assert not (tmp_path / "o").exists()


def test_a_typo_in_data_is_reported_before_the_model_loads(capsys, muted_clips, tmp_path, monkeypatch):
    from verl_avconfuse.evaluation import backends

    def tripwire(self, *args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(backends.HFOmniBackend, "__init__", tripwire)
    model = tmp_path / "thinker"  # a checkpoint folder as far as the spec check sees; loading it would trip
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2_5_omni_thinker"}')
    base = ["--video-dir", muted_clips, "--backend", f"hf:{model}", "--out", tmp_path / "o", "--no-progress"]
    code, _, err = run_cli(capsys, "eval", "avconfuse-muted", "--data", tmp_path / "questions.jsn", *base)
    assert code == EXIT_USAGE
    assert_one_line(err, f"--data {tmp_path / 'questions.jsn'}: no such file")
    code, _, err = run_cli(capsys, "eval", "avconfuse-muted", "--data", muted_clips / "questions.json", *base[:1],
                           tmp_path / "clipz", *base[2:])  # fmt: skip
    assert code == EXIT_USAGE and "--video-dir" in err and "no such folder" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, "eval", "avconfuse-muted", "--data", muted_clips / "questions.json",
                           "--video-dir", empty, *base[2:])  # fmt: skip
    assert code == EXIT_USAGE
    assert_one_line(err, "3 unusable media file(s); nothing was evaluated (--skip-bad leaves them out)")


def test_jsonl_predictions_missing_ids_are_named_before_anything_runs(capsys, muted_clips, tmp_path):
    ids = _doc_ids(muted_clips)
    predictions = _predictions(tmp_path / "p.jsonl", ids[:1])
    code, _, err = run_cli(
        capsys, "eval", "avconfuse-muted", "--data", muted_clips / "questions.json", "--video-dir", muted_clips,
        "--backend", f"jsonl:{predictions}", "--out", tmp_path / "o", "--no-progress",
    )  # fmt: skip
    assert code == EXIT_USAGE
    assert_one_line(err, f"jsonl:{predictions}: no prediction for 2 of the 3 questions", repr(ids[1]), repr(ids[2]))
    assert not (tmp_path / "o").exists()
    _predictions(predictions, ids)
    code, out, err = run_cli(
        capsys, "eval", "avconfuse-muted", "--data", muted_clips / "questions.json", "--video-dir", muted_clips,
        "--backend", f"jsonl:{predictions}", "--out", tmp_path / "o", "--no-progress",
    )  # fmt: skip
    assert code == 0 and "| strict | 100.00 | 0.00 |" in out  # three "no" answers to three "no" questions


def test_an_unreachable_server_is_one_line_before_any_request(capsys, muted_clips, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, _, err = run_cli(
        capsys, "eval", "avconfuse-muted", "--data", muted_clips / "questions.json", "--video-dir", muted_clips,
        "--backend", f"openai:{url}#qwen", "--out", tmp_path / "o", "--no-progress",
    )  # fmt: skip
    assert code == EXIT_USAGE
    assert_one_line(err, f"--backend openai:{url}#qwen: no server answers at {url}/models", "vllm serve")
    assert not (tmp_path / "o").exists()


class _NoScoresHandler(BaseHTTPRequestHandler):
    """A chat server that answers every request, never with a score pair (a judge that always fails)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._send({"data": [{"id": "judge"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send({"choices": [{"message": {"role": "assistant", "content": "I cannot grade this."}}]})

    def _send(self, payload):
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scoreless_judge():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoScoresHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def test_a_judge_that_scores_nothing_fails_the_run_and_an_unreachable_one_fails_first(
    capsys, tmp_path, scoreless_judge
):
    items = load_questions(published_questions("modified"), "modified")[:2]
    clips = tmp_path / "clips"
    clips.mkdir()
    base = write_synthetic_video(clips / "_base.mp4", duration_s=1.0, fps=4, audio=tone(330.0, 1.0), seed=4)
    for item in items:
        shutil.copy(base, clips / item["filename"])
    (tmp_path / "q.json").write_text(json.dumps(items))
    from verl_avconfuse.evaluation.tasks import get_task

    docs, _ = get_task("avconfuse-modified").load_docs(tmp_path / "q.json", clips, _load_options())
    predictions = _predictions(tmp_path / "p.jsonl", [d.id for d in docs])
    command = ["bench", "eval", "--setting", "modified", "--questions", tmp_path / "q.json", "--video-dir", clips,
               "--backend", f"jsonl:{predictions}", "--no-progress"]  # fmt: skip

    dead = f"http://127.0.0.1:{free_port()}/v1"
    code, _, err = run_cli(capsys, *command, "--judge", f"openai:{dead}#gpt", "--out", tmp_path / "dead")
    assert code == EXIT_USAGE and not (tmp_path / "dead").exists()
    assert_one_line(err, f"--judge openai:{dead}#gpt: no server answers")

    code, out, err = run_cli(capsys, *command, "--judge", f"openai:{scoreless_judge}#gpt", "--out", tmp_path / "o")
    assert code == EXIT_FAILED and out == ""
    assert_one_line(err, "the judge llm:gpt scored none of the 2 items (unparsable reply", "re-run")
    assert (tmp_path / "o" / "avconfuse-modified.results.json").is_file()  # the report is kept


def test_tiny_asset_and_extract_thinker_mistakes(capsys, tmp_path):
    code, _, err = run_cli(capsys, "tiny-asset", "models/nonexistent")
    assert code == EXIT_USAGE
    assert_one_line(err, "unknown tiny model; known: models/{", "omni_thinker")
    code, _, err = run_cli(capsys, "extract-thinker", tmp_path / "missing", tmp_path / "out")
    assert code == EXIT_USAGE
    assert_one_line(err, f"full {tmp_path / 'missing'}: no such folder")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ reference precompute


def _reference_rows(path: Path, media: list[str]) -> Path:
    rows = [
        {
            "prompt": [{"role": "user", "content": "<audio>What do you hear?"}],
            "audios": [m],
            "reward_model": {"style": "rule", "ground_truth": "a tone"},
            "extra_info": {"question": "What do you hear?"},
        }
        for m in media
    ]
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_precompute_with_unresolvable_media_names_media_root_and_keeps_the_old_output(capsys, tmp_path, monkeypatch):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(WAV_16K, clips / "a.wav")
    data = _reference_rows(tmp_path / "train.parquet", ["a.wav", "a.wav"])  # relative to clips/
    out = tmp_path / "train.ref.parquet"
    out.write_bytes(b"a previous, good output")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "reference", "precompute", "--data", data, "--model", tmp_path / "no-model")
    assert code == EXIT_USAGE
    assert_one_line(err, "2 of 2 rows have no usable media file", "pass --media-root DIR", "row 0: a.wav: no such file")
    assert out.read_bytes() == b"a previous, good output"
    # with --media-root the media resolve and the next mistake is named, still before any model loads
    code, _, err = run_cli(capsys, "reference", "precompute", "--data", data, "--model", tmp_path / "no-model",
                           "--media-root", clips)  # fmt: skip
    assert code == EXIT_USAGE
    assert_one_line(err, f"--model {tmp_path / 'no-model'}: no such folder")
    assert out.read_bytes() == b"a previous, good output"


def test_precompute_refuses_a_file_that_is_not_parquet_and_vllm_when_it_is_missing(capsys, tmp_path):
    import importlib.util

    (tmp_path / "x.json").write_text('{"rows": []}')
    code, _, err = run_cli(capsys, "reference", "precompute", "--data", tmp_path / "x.json", "--model", "m")
    assert code == EXIT_USAGE
    assert_one_line(err, f"--data {tmp_path / 'x.json'}: not a parquet file")
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: the missing-vLLM message cannot be seen")
    data = _reference_rows(tmp_path / "t.parquet", [str(WAV_16K)])
    model = tmp_path / "model"
    model.mkdir()
    code, _, err = run_cli(capsys, "reference", "precompute", "--data", data, "--model", model, "--backend", "vllm")
    assert code == EXIT_USAGE
    assert_one_line(err, "--backend vllm: vLLM is not installed (pip install vllm", "--backend hf")


# ------------------------------------------------------------------------------------ muted names


def test_instrument_names_are_one_token_whatever_their_case_and_spaces():
    assert instrument_name("Violin", "m") == instrument_name("violin ", "m") == instrument_name(" VIOLIN", "m")
    assert instrument_name("Acoustic Guitar", "m") == "acoustic_guitar" == instrument_name("acoustic-guitar", "m")
    with pytest.raises(BenchFormatError, match=r"'violin1' ends with a number.*\"violin\": \[\"a.wav\", \"b.wav\"\]"):
        instrument_name("violin1", "m.json: entry 0")


def test_a_manifest_lists_two_violins_and_neither_is_muted(tmp_path):
    video = write_synthetic_video(tmp_path / "v.mp4", duration_s=0.5, fps=4)
    for name in ("a.wav", "b.wav", "c.wav"):
        shutil.copy(WAV_16K, tmp_path / name)
    entries = [
        {"id": "dict", "video": "v.mp4", "sources": {"Violin": ["a.wav", "b.wav"], "cello ": "c.wav"}},
        {"id": "pairs", "video": "v.mp4", "sources": [["violin", "a.wav"], ["Violin ", "b.wav"], ["Cello", "c.wav"]]},
    ]  # fmt: skip
    (tmp_path / "m.json").write_text(json.dumps(entries))
    pieces = load_muted_manifest(tmp_path / "m.json")
    expected = (("violin", tmp_path / "a.wav"), ("violin", tmp_path / "b.wav"), ("cello", tmp_path / "c.wav"))
    assert [p.sources for p in pieces] == [expected, expected]
    skipped: list[dict] = []
    assert _chosen_sources(Piece("dict", video, expected), "all", 0, skipped) == [2]  # only the cello is muted
    assert [s["source"] for s in skipped] == ["violin", "violin"]
    (tmp_path / "bad.json").write_text(json.dumps([{"video": "v.mp4", "sources": {"violin1": "a.wav"}}]))
    with pytest.raises(BenchFormatError, match=r"bad.json: entry 0 \(source 'violin1'\): source name 'violin1'"):
        load_muted_manifest(tmp_path / "bad.json")


def test_a_build_records_absolute_source_paths_and_a_failed_build_leaves_no_out(capsys, tmp_path, monkeypatch):
    from verl_avconfuse.media import write_wav

    video = write_synthetic_video(tmp_path / "v.mp4", duration_s=1.0, fps=4)
    write_wav(tmp_path / "violin.wav", tone(440.0, 1.0, sr=16000), 16000)
    write_wav(tmp_path / "cello.wav", tone(220.0, 1.0, sr=16000), 16000)
    (tmp_path / "m.json").write_text(
        json.dumps([{"video": "v.mp4", "sources": {"violin": "violin.wav", "cello": "cello.wav"}}])
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "bench", "build", "muted", "--manifest", "m.json", "--out", "set", "--no-progress")
    assert code == 0 and json.loads(out)["clips"] == 2
    manifest = json.loads((tmp_path / "set" / "avconfusebench_muted.manifest.json").read_text())
    assert {r["source_video"] for r in manifest["items"]} == {str(video.resolve())}
    assert manifest["items"][0]["stems"] == [
        ["violin", str(tmp_path / "violin.wav")],
        ["cello", str(tmp_path / "cello.wav")],
    ]

    (tmp_path / "cello.wav").write_bytes(b"RIFF\x00\x00not a wav")
    code, _, err = run_cli(capsys, "bench", "build", "muted", "--manifest", "m.json", "--out", "new/set")
    assert code == EXIT_USAGE and "cello.wav" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()
