"""AV-ConfuseBench evaluation (the ``avconfuse-muted`` / ``avconfuse-modified`` tasks of the one harness): the
published question files end to end with the tiny Omni thinker, the judges (LLM over a real HTTP server on
127.0.0.1 running the tiny Qwen2, and the offline MiniLM judge), metrics by hand.

The videos are synthetic clips named after the published video ids / file names."""

from __future__ import annotations

import json
import math
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verl_avconfuse.bench.report import PAPER_RESULTS, published_setting
from verl_avconfuse.bench.schemas import BenchFormatError, load_questions, published_questions
from verl_avconfuse.evaluation.confusebench import evaluate
from verl_avconfuse.evaluation.judge import (
    JudgeCache,
    JudgeParseError,
    LLMJudge,
    OfflineJudge,
    cache_key,
    description_parts,
    judge_prompt,
    mentions_sound,
    parse_judge_reply,
    scaled_similarity,
)
from verl_avconfuse.evaluation.tasks import ScoredDoc, muted_cell
from verl_avconfuse.evaluation.yes_probability import (
    NO_STRINGS,
    YES_STRINGS,
    answer_polarity,
    answer_prefix,
    extracted_answer,
    single_token_variants,
    yes_probability,
)
from verl_avconfuse.media import tone, write_synthetic_video

API_KEY = "sk-test-bench-0123456789"


@pytest.mark.parametrize(("setting", "count"), [("muted", 73), ("modified", 100)])
def test_published_files_ship_inside_the_installed_package(shared_dir, setting, count):
    import verl_avconfuse

    path = published_questions(setting)
    assert path.is_file() and Path(verl_avconfuse.__file__).parent in path.parents
    assert len(load_questions(path, setting)) == count
    released = shared_dir / "data" / "avconfusebench" / path.name
    if released.is_file():  # the copy we ship is the released file, byte for byte
        assert path.read_bytes() == released.read_bytes()
    with pytest.raises(ValueError, match="setting: expected one of"):
        published_questions("muffled")


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    """One 1 s synthetic clip copied under every published muted and modified name."""
    folder = tmp_path_factory.mktemp("published_videos")
    base = write_synthetic_video(folder / "_base.mp4", duration_s=1.0, fps=4, audio=tone(440.0, 1.0), seed=2)
    for item in load_questions(published_questions("muted"), "muted"):
        shutil.copy(base, folder / f"{item['video_id']}.mp4")
    for item in load_questions(published_questions("modified"), "modified"):
        shutil.copy(base, folder / item["filename"])
    return folder


@pytest.fixture(scope="module")
def omni(tiny_asset):
    from verl_avconfuse.evaluation.backends import HFOmniBackend

    return HFOmniBackend(tiny_asset("models/omni_thinker"), fps=1.0, max_frames=2, batch_size=8)


class CountingBackend:
    """Forwards to a real backend and counts the requests it was asked (to see the prediction cache work)."""

    def __init__(self, backend):
        self.backend, self.name, self.asked = backend, backend.name, 0

    def generate(self, requests):
        self.asked += len(requests)
        return self.backend.generate(requests)


# ----------------------------------------------------------------------------------- muted, tiny Omni


def test_muted_published_set_end_to_end_with_the_tiny_omni(video_dir, omni, tmp_path):
    questions = published_questions("muted")
    backend = CountingBackend(omni)
    results = evaluate(questions, video_dir, backend, tmp_path, max_new_tokens=8)
    assert backend.asked == 73
    assert (results["task"], results["published"], results["n_docs"]) == ("avconfuse-muted", True, 73)
    m = results["metrics"]
    assert m["n_muted"] == 73 and m["n_controls"] == 0 and m["balanced_accuracy"] is None
    assert m["yes_rate"] + m["no_rate"] + m["other_rate"] == pytest.approx(100.0)
    # Every answer is "no": right exactly when the reply says no, and the paper's Yes% is the rest.
    assert m["muted_accuracy"] == pytest.approx(m["no_rate"]) == pytest.approx(m["accuracy"])
    assert m["paper_yes_rate"] == pytest.approx(100.0 - m["muted_accuracy"])
    recount = [answer_polarity(extracted_answer(r["prediction"])) == "no" for r in results["docs"]]
    assert m["muted_accuracy"] == pytest.approx(100.0 * sum(recount) / 73)
    assert set(m["groups"]) == {"two", "three"} and m["groups"]["three"]["n"] == 3

    saved = json.loads((tmp_path / "avconfuse-muted.results.json").read_text())
    assert (
        saved["metrics"] == m
        and saved["paper"]["+ RL-CoMM"]["muted_accuracy"] == PAPER_RESULTS["+ RL-CoMM"]["muted_accuracy"]
    )
    markdown = (tmp_path / "avconfuse-muted.md").read_text()
    assert "| Qwen2.5-Omni-3B + RL-CoMM (paper) | 27.40 | 72.60 |" in markdown
    assert "(the published set)" in markdown
    assert (tmp_path / "avconfuse-muted.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cache = tmp_path / "avconfuse-muted.predictions.jsonl"
    assert [json.loads(line)["id"] for line in cache.read_text().splitlines()] == [r["id"] for r in results["docs"]]

    again = evaluate(questions, video_dir, backend, tmp_path, max_new_tokens=8)
    assert backend.asked == 73 and again["metrics"] == m  # every reply came from the cache
    # The finished cache is a valid predictions file for the jsonl: backend.
    from verl_avconfuse.evaluation.backends import load_backend

    replay = evaluate(questions, video_dir, load_backend(f"jsonl:{cache}"), tmp_path / "r")
    assert [r["prediction"] for r in replay["docs"]] == [r["prediction"] for r in results["docs"]]


def test_yes_probability_from_the_tiny_omni_logits(video_dir, omni, tmp_path):
    from verl_avconfuse.evaluation.runner import doc_request
    from verl_avconfuse.evaluation.tasks import TASKS, LoadOptions

    results = evaluate(
        published_questions("muted"), video_dir, omni, tmp_path, limit=3, yes_prob=True, max_new_tokens=8
    )
    assert results["published"] and results["n_docs"] == 3 and results["n_total"] == 73
    assert "a subset" in (tmp_path / "avconfuse-muted.md").read_text()
    yes, no = single_token_variants(omni, YES_STRINGS), single_token_variants(omni, NO_STRINGS)
    assert set(yes) <= set(YES_STRINGS) and "yes" in yes and " no" in no
    docs, _ = TASKS["avconfuse-muted"].load_docs(published_questions("muted"), video_dir, LoadOptions())
    request = doc_request(docs[0], 8)
    record = results["docs"][0]
    log_probs = omni.next_token_logprobs(request, answer_prefix(record["prediction"]), yes + no)
    p_yes = sum(math.exp(log_probs[s]) for s in yes)
    p_no = sum(math.exp(log_probs[s]) for s in no)
    assert record["p_yes"] == pytest.approx(p_yes / (p_yes + p_no), rel=1e-4)
    assert 0.0 < record["p_yes"] < 1.0
    assert results["metrics"]["mean_p_yes"] == pytest.approx(sum(r["p_yes"] for r in results["docs"]) / 3)
    assert yes_probability(omni, request, record["prediction"]) == pytest.approx(record["p_yes"], rel=1e-4)


def test_answer_prefix_cuts_at_the_graded_answer_tag():
    assert answer_prefix("<a-think> a </a-think> <v-think> v </v-think> <answer> no </answer>") == (
        "<a-think> a </a-think> <v-think> v </v-think> <answer>"
    )
    # An answer written before the reasoning is not the graded one: the one after it is.
    assert (
        answer_prefix("<answer>x</answer><a-think>a</a-think><answer> yes")
        == "<answer>x</answer><a-think>a</a-think><answer>"
    )
    assert answer_prefix("I think") == "I think\n<answer>"
    assert answer_prefix("") == "<answer>"


def test_answer_polarity_follows_the_project_answer_rules():
    assert answer_polarity(extracted_answer("<a-think>x</a-think> <answer> No. </answer>")) == "no"
    assert answer_polarity(extracted_answer("Yes, there is a violin sound.")) == "yes"
    assert answer_polarity(extracted_answer("piano")) is None  # not the release's substring "no"
    assert answer_polarity(extracted_answer("not sure")) is None
    assert extracted_answer("yes", strict_format=True) is None
    assert extracted_answer("<answer> yes </answer>", strict_format=True) == "yes"


def test_muted_metrics_by_hand_with_controls():
    def scored(truth, says, p_yes=None):
        extra = {} if p_yes is None else {"p_yes": p_yes}
        return ScoredDoc("x", "two", "", says, says == truth, says is not None, truth, says, extra)

    docs = [scored("no", "no"), scored("no", "no"), scored("no", "yes", 0.8), scored("no", None)]
    docs += [scored("yes", "yes", 0.9), scored("yes", "no")]
    m = muted_cell(docs)
    assert (m["n"], m["n_muted"], m["n_controls"]) == (6, 4, 2)
    assert m["muted_accuracy"] == 50.0 and m["paper_yes_rate"] == 50.0
    assert m["control_accuracy"] == 50.0 and m["balanced_accuracy"] == 50.0
    assert m["accuracy"] == pytest.approx(300 / 6)
    assert m["yes_rate"] == pytest.approx(200 / 6) and m["other_rate"] == pytest.approx(100 / 6)
    assert m["mean_p_yes"] == pytest.approx(0.85)


def test_built_set_with_controls_gets_balanced_accuracy(tmp_path, omni):
    from verl_avconfuse.bench.muted import build_muted, load_muted_manifest
    from verl_avconfuse.media import write_wav

    video = write_synthetic_video(tmp_path / "duet.mp4", duration_s=1.0, fps=4, seed=4)
    write_wav(tmp_path / "violin.wav", tone(660.0, 1.0, 16000), 16000)
    write_wav(tmp_path / "cello.wav", tone(220.0, 1.0, 16000), 16000)
    (tmp_path / "m.json").write_text(
        json.dumps([{"video": str(video), "sources": {"violin": "violin.wav", "cello": "cello.wav"}}])
    )
    build = build_muted(load_muted_manifest(tmp_path / "m.json"), tmp_path / "set", controls=True)
    results = evaluate(build.paths["questions"], tmp_path / "set" / "videos", omni, tmp_path / "eval", max_new_tokens=8)
    m = results["metrics"]
    assert (results["published"], m["n_muted"], m["n_controls"]) == (False, 2, 2)
    assert m["balanced_accuracy"] == pytest.approx((m["muted_accuracy"] + m["control_accuracy"]) / 2)
    assert set(m["groups"]) == {"no", "yes"}
    assert "(paper)" not in (tmp_path / "eval" / "avconfuse-muted.md").read_text()


def test_missing_videos_are_named_or_skipped(video_dir, omni, tmp_path):
    partial = tmp_path / "videos"
    partial.mkdir()
    for name in ("000001.mp4", "000002.mp4"):
        shutil.copy(video_dir / name, partial / name)
    with pytest.raises(
        ValueError, match=r"71 unusable media file\(s\); nothing was evaluated .*: 000003.mp4: file not"
    ):
        evaluate(published_questions("muted"), partial, omni, tmp_path / "o")
    results = evaluate(published_questions("muted"), partial, omni, tmp_path / "o", skip_bad=True, max_new_tokens=4)
    assert results["n_docs"] == 2 and len(results["skipped"]) == 71


def test_question_file_errors_name_file_item_and_field(tmp_path):
    bad = tmp_path / "q.json"
    bad.write_text(
        json.dumps(
            [
                {
                    "video_id": "1",
                    "question": "Is there?",
                    "answer": "maybe",
                    "instruments": "x",
                    "instruments_len": "one",
                }
            ]
        )
    )
    with pytest.raises(BenchFormatError, match=r"q.json: item 0 \(video_id '1'\): answer must be 'yes' or 'no'"):
        load_questions(bad)
    bad.write_text(json.dumps([{"video_id": "1", "filename": "a.mp4", "question": "q", "sound_type": "rain"}]))
    with pytest.raises(BenchFormatError, match=r"item 0 \(video_id '1'\): missing field 'annotation'"):
        load_questions(bad, "modified")


# --------------------------------------------------------------------------------------- judge parsing


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"audio_score": 3, "visual_score": 5}', (3.0, 5.0)),
        ('```json\n{"audio_score": "4", "visual_score": 4.5}\n```\nThe audio is rain.', (4.0, 4.5)),
        ("Sure! {'audio_score': 2, 'visual_score': '3'} Hope this helps", (2.0, 3.0)),
        ('{"scores": {"audio": "4/5", "visual": 1}}', (4.0, 1.0)),
        ('{"Audio Score": 0, "Video Score": 5}', (0.0, 5.0)),
        ("Audio score: 1\nVisual score: 2", (1.0, 2.0)),
        ('{"reasoning": "the {drill} is wrong", "audio_score": 1, "visual_score": 4}', (1.0, 4.0)),
    ],
)
def test_parse_judge_reply_accepts_messy_json(reply, expected):
    assert parse_judge_reply(reply) == expected


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"audio_score": 7, "visual_score": 4}', r"audio_score=7.0 is outside \[0, 5\]"),
        ('{"audio_score": -1, "visual_score": 4}', "outside"),
        ('{"audio_score": true, "visual_score": 4}', "is True"),
        ('{"audio_score": 3}', "no audio and visual scores"),
        ('{"audio_score": "8/10", "visual_score": 4}', "a fraction of 10"),
        ('{"audio_score": "NaN", "visual_score": 4}', "expected a number"),
        ("", "empty reply"),
        ("I cannot grade this.", "no audio and visual scores"),
    ],
)
def test_parse_judge_reply_rejects_what_is_not_a_0_to_5_pair(reply, reason):
    with pytest.raises(JudgeParseError, match=reason):
        parse_judge_reply(reply)


@given(st.integers(0, 5), st.integers(0, 5), st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=40))
def test_parse_judge_reply_finds_scores_in_any_surrounding_text(audio, visual, noise):
    reply = f'{noise}\n```json\n{{"audio_score": {audio}, "visual_score": "{visual}"}}\n```\n{noise}'
    assert parse_judge_reply(reply) == (audio, visual)


@given(st.text(max_size=200))
def test_parse_judge_reply_never_fails_with_anything_but_a_parse_error(text):
    try:
        audio, visual = parse_judge_reply(text)
    except JudgeParseError:
        return
    assert 0 <= audio <= 5 and 0 <= visual <= 5


def test_judge_prompt_defuses_media_placeholders():
    prompt = judge_prompt("I see <video> and hear <audio>", "Based on the video, x. Based on the audio, y.")
    assert "<video>" not in prompt and "(video)" in prompt and "Based on the audio, y." in prompt


def test_mentions_sound_uses_synonyms_and_skips_negations():
    assert mentions_sound("Someone is using a power tool nearby.", "drill")
    assert mentions_sound("Birds are chirping in the trees", "bird")
    assert mentions_sound("A loud thunderclap.", "thunderstorm")
    assert not mentions_sound("There is no rain, only a piano.", "rain")
    assert not mentions_sound("I don't hear any wind at all", "wind")
    assert not mentions_sound("The drummer plays.", "drill")  # whole words only
    assert mentions_sound("No piano. Heavy rain is falling.", "rain")  # the negation is too far back


def test_description_parts_prefer_the_blocks_and_markers():
    reply = (
        "<a-think>I hear rain.</a-think> <v-think>I see a guitarist.</v-think> "
        "<answer>Based on the video, a man plays guitar. Based on the audio, rain is falling.</answer>"
    )
    assert description_parts(reply) == ("I hear rain. rain is falling.", "I see a guitarist. a man plays guitar.")
    assert description_parts("A man plays guitar in the rain.") == ("A man plays guitar in the rain.",) * 2


def test_offline_judge_scores_by_hand_mapping():
    assert (
        scaled_similarity(0.2) == 0.0 and scaled_similarity(0.8) == 1.0 and scaled_similarity(0.5) == pytest.approx(0.5)
    )
    item = next(i for i in load_questions(published_questions("modified")) if i["sound_type"] == "rain")
    judge = OfflineJudge()
    right = item["annotation"]
    wrong = "Based on the video, a dog runs on a beach. Based on the audio, a piano melody is playing."
    scores = judge.score([(right, item["annotation"]), (wrong, item["annotation"])], ["rain", "rain"])
    assert scores[0].audio == pytest.approx(5.0, abs=0.01) and scores[0].visual == pytest.approx(5.0, abs=0.01)
    assert scores[1].audio < 2.5  # no rain mentioned: at most the similarity half
    assert scores[1].visual < scores[0].visual
    placeholder = (
        "Based on the video, [describe what the video shows]. Based on the audio, there is a sound of rain falling."
    )
    assert judge.score([(right, placeholder)], ["rain"])[0].visual is None


# ------------------------------------------------------------------------------ HTTP judge (tiny Qwen2)


class _ChatServer(ThreadingHTTPServer):
    """``POST /v1/chat/completions`` on 127.0.0.1, answered by the tiny Qwen2 (greedy), or by ``scripted``
    replies in turn; the first ``fail_next`` requests get HTTP 503. Every request's headers are kept."""

    daemon_threads = True

    def __init__(self, model_dir: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.lock = threading.Lock()
        self.seen: list[dict] = []
        self.scripted: list[str] | None = None
        self.answered = 0
        self.fail_next = 0

    def reply(self, body: dict) -> str:
        import torch

        texts = []
        for message in body["messages"]:
            content = message["content"]
            parts = (
                [content]
                if isinstance(content, str)
                else [p.get("text", "") for p in content if p.get("type") == "text"]
            )
            texts.append({"role": message["role"], "content": "\n".join(parts)})
        with self.lock:
            if self.scripted is not None:
                self.answered += 1
                return self.scripted[(self.answered - 1) % len(self.scripted)]
            inputs = self.tokenizer.apply_chat_template(
                texts, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            with torch.inference_mode():
                output = self.model.generate(
                    **inputs, max_new_tokens=min(int(body.get("max_tokens", 32)), 32), do_sample=False
                )
            return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


class _ChatHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        server: _ChatServer = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.seen.append({"authorization": self.headers.get("Authorization"), "body": body})
            failing = server.fail_next > 0
            server.fail_next -= 1 if failing else 0
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if failing:
            return self._send(503, {"error": {"message": "warming up"}})
        content = server.reply(body)
        self._send(200, {"object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})  # fmt: skip


@pytest.fixture(scope="module")
def chat_server(tiny_asset):
    server = _ChatServer(tiny_asset("models/qwen2"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh_server(chat_server):
    chat_server.seen.clear()
    chat_server.scripted, chat_server.fail_next, chat_server.answered = None, 0, 0
    yield chat_server
    chat_server.scripted, chat_server.fail_next = None, 0


def _all_text(folder: Path) -> str:
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file())


def test_modified_published_set_with_the_tiny_qwen2_judge_over_http(
    video_dir, omni, fresh_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("JUDGE_KEY", API_KEY)
    url = f"http://127.0.0.1:{fresh_server.server_port}/v1"
    judge = LLMJudge(url, "tiny-qwen2", api_key_env="JUDGE_KEY", cache_path=tmp_path / "judge.jsonl", parse_retries=0)
    results = evaluate(
        published_questions("modified"), video_dir, omni, tmp_path, judge=judge, limit=6, max_new_tokens=8
    )
    m = results["metrics"]
    assert results["published"] and results["judge"] == "llm:tiny-qwen2" and m["n"] == 6
    # The random tiny model writes no score pair: every item is a counted failure, no fabricated score.
    assert m["n_judged"] + m["n_judge_failures"] == 6
    failed = [r for r in results["docs"] if r["audio_score"] is None]
    assert all(r["judge_error"].startswith("unparsable reply") for r in failed)
    assert len(fresh_server.seen) == 6
    assert {s["authorization"] for s in fresh_server.seen} == {f"Bearer {API_KEY}"}
    prompts = [s["body"]["messages"][0]["content"][0]["text"] for s in fresh_server.seen]
    assert all('"audio_score"' in p for p in prompts)
    assert sorted(r["ground_truth"] in p for r in results["docs"] for p in prompts).count(True) == 6
    assert API_KEY not in _all_text(tmp_path)  # the key is never written: results, predictions, cache


def test_llm_judge_scores_retries_and_caches(video_dir, fresh_server, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", API_KEY)
    url = f"http://127.0.0.1:{fresh_server.server_port}/v1"
    fresh_server.scripted = [
        '```json\n{"audio_score": "4", "visual_score": 5}\n```',
        "Scores: {'audio_score': 1, 'visual_score': '2'} -- the drill was missed.",
        '{"audio_score": 9, "visual_score": 5}',  # another scale: rejected, then asked again
        '{"audio_score": 0, "visual_score": 3}',
    ]
    fresh_server.fail_next = 1  # the first request gets a 503 and is retried after back-off
    pairs = [(f"prediction {i}", f"Based on the video, v{i}. Based on the audio, a{i}.") for i in range(3)]
    judge = LLMJudge(url, "tiny-qwen2", api_key_env="JUDGE_KEY", cache_path=tmp_path / "j.jsonl", concurrency=1)
    first = judge.score(pairs)
    assert [(r.audio, r.visual) for r in first] == [(4.0, 5.0), (1.0, 2.0), (0.0, 3.0)]
    assert len(fresh_server.seen) == 5  # 1 refused + 3 answered + 1 re-ask after the out-of-range reply
    assert len(JudgeCache(tmp_path / "j.jsonl")) == 3
    again = LLMJudge(url, "tiny-qwen2", api_key_env="JUDGE_KEY", cache_path=tmp_path / "j.jsonl").score(pairs)
    assert [(r.audio, r.visual, r.cached) for r in again] == [(4.0, 5.0, True), (1.0, 2.0, True), (0.0, 3.0, True)]
    assert len(fresh_server.seen) == 5  # nothing sent
    record = json.loads((tmp_path / "j.jsonl").read_text().splitlines()[0])
    assert record["key"] == cache_key("tiny-qwen2", *pairs[0]) and API_KEY not in (tmp_path / "j.jsonl").read_text()
    # Another model or prompt version is another cache entry.
    assert cache_key("other", *pairs[0]) != record["key"]


def test_cli_eval_modified_offline_and_muted_over_http(
    video_dir, fresh_server, tiny_asset, tmp_path, monkeypatch, capsys
):
    from verl_avconfuse import cli

    monkeypatch.setitem(
        cli.COMMANDS, "bench", (("verl_avconfuse.bench.cli", "verl_avconfuse.evaluation.cli"), "AV-ConfuseBench")
    )
    omni_path = tiny_asset("models/omni_thinker")
    args = ["bench", "eval", "--setting", "modified", "--questions", "published", "--video-dir", str(video_dir)]
    args += ["--backend", f"hf:{omni_path}", "--out", str(tmp_path / "mod"), "--max-new-tokens", "8", "--fps", "1"]
    args += ["--max-frames", "2", "--batch-size", "8"]
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["published"] and summary["n_items"] == 100 and summary["judge"].startswith("offline:")
    m = summary["metrics"]
    assert m["n_judged"] == 100 and 0.0 <= m["a_acc"] <= 5.0 and 0.0 <= m["v_acc"] <= 5.0
    saved = json.loads((tmp_path / "mod" / "avconfuse-modified.results.json").read_text())
    assert {g: v["n"] for g, v in saved["metrics"]["groups"].items()} == dict.fromkeys(
        ["bird", "drill", "rain", "thunderstorm", "wind"], 20
    )
    table = (tmp_path / "mod" / "avconfuse-modified.md").read_text()
    assert "| Qwen2.5-Omni-3B + RL-CoMM (paper) | 2.36 | 4.54 |" in table

    monkeypatch.setenv("SERVE_KEY", API_KEY)
    url = f"http://127.0.0.1:{fresh_server.server_port}/v1"
    args = ["bench", "eval", "--setting", "muted", "--questions", str(published_questions("muted"))]
    args += ["--video-dir", str(video_dir), "--backend", f"openai:{url}#tiny-qwen2", "--api-key-env", "SERVE_KEY"]
    args += ["--out", str(tmp_path / "muted"), "--limit", "3", "--max-new-tokens", "8"]
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_items"] == 3 and summary["backend"].startswith("openai:")
    sent = fresh_server.seen[0]["body"]["messages"][0]["content"]
    assert sent[0]["type"] == "video_url" and sent[-1]["text"].startswith("This is a video of audio corruption")
    assert API_KEY not in _all_text(tmp_path / "muted")

    assert cli.main([*args[:-4], "--limit", "3", "--yes-prob"]) == 2
    assert "--yes-prob needs the hf: or vllm: backend" in capsys.readouterr().err
    assert sent[-1]["text"].endswith("Your answer can only be 'yes' or 'no'")  # --prompt paper: verbatim


def test_published_files_are_recognised_by_content():
    muted = load_questions(published_questions("muted"))
    assert published_setting(muted, "muted")
    changed = [dict(muted[0], question=muted[0]["question"].replace("thera", "there")), *muted[1:]]
    assert not published_setting(changed, "muted")
