"""The layer-by-layer diagnosis (`avconfuse diagnose layer-entropy`): the maths by hand, the logit lens against
the model's own forward, a model built to decide at a known layer, and the command on real clips."""

from __future__ import annotations

import json
import math

import pytest
import torch

from verl_avconfuse import cli
from verl_avconfuse.diagnosis.lens import LogitLens
from verl_avconfuse.diagnosis.stats import (
    entropy_from_logits,
    layer_readout,
    mean_ci,
    paired_differences,
    question_groups,
    summarize_groups,
)

# ------------------------------------------------------------------------------------------- the maths


def test_entropy_of_constructed_distributions():
    # p = (1/2, 1/4, 1/4): H = 1/2 ln 2 + 2 * 1/4 ln 4 = 1.5 ln 2
    assert float(entropy_from_logits(torch.log(torch.tensor([0.5, 0.25, 0.25])))) == pytest.approx(1.5 * math.log(2))
    # uniform over 1000 tokens, whatever the offset of the logits: ln 1000
    assert float(entropy_from_logits(torch.full((1000,), 7.0))) == pytest.approx(math.log(1000))
    # a token of probability 0 (logit -inf) adds nothing, not NaN
    assert float(entropy_from_logits(torch.tensor([0.0, -math.inf, -math.inf]))) == 0.0
    # rows are independent
    rows = entropy_from_logits(torch.tensor([[0.0, 0.0], [0.0, -math.inf]]))
    assert rows.tolist() == pytest.approx([math.log(2), 0.0])


def test_readout_p_yes_mass_and_rank_by_hand():
    # token:            0    1(yes) 2(Yes) 3(no)  4    5
    p = torch.tensor([[0.1, 0.2, 0.1, 0.3, 0.2, 0.1], [0.05, 0.05, 0.0, 0.8, 0.05, 0.05]])
    out = layer_readout(torch.log(p), yes_ids=[1, 2], no_ids=[3], answer_id=4)
    # P(yes) sums the yes variants: (0.2 + 0.1) / (0.2 + 0.1 + 0.3); mass 0.6
    assert out["p_yes"] == pytest.approx([0.5, 0.05 / 0.85])
    assert out["yes_no_mass"] == pytest.approx([0.6, 0.85])
    # rank of token 4: only token 3 is strictly above it in row 0 (token 1 ties at 0.2 and does not count)
    assert out["answer_rank"] == [2.0, 2.0]
    assert out["top_token"] == [3, 3]
    expected_h0 = -sum(x * math.log(x) for x in (0.1, 0.2, 0.1, 0.3, 0.2, 0.1))
    assert out["entropy"][0] == pytest.approx(expected_h0)


def test_mean_ci_by_hand():
    # 1..5: mean 3, s = sqrt(2.5), t(0.975, 4) = 2.776445 -> half width 2.776445 * 1.581139 / sqrt(5) = 1.963243
    ci = mean_ci([1, 2, 3, 4, 5])
    assert ci["n"] == 5 and ci["mean"] == pytest.approx(3.0)
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((3 - 1.963243, 3 + 1.963243), abs=1e-6)
    # 0.9, 1, 1 as probabilities: mean 0.966667, s = 0.057735, t(0.975, 2) = 4.302653 -> +-0.143422, the top
    # clipped at 1
    ci = mean_ci([0.9, 1.0, 1.0], bounds=(0.0, 1.0))
    assert (ci["mean"], ci["ci_low"], ci["ci_high"]) == pytest.approx((0.966667, 0.823245, 1.0), abs=1e-6)
    # a 90 % interval: t(0.95, 4) = 2.131847
    assert mean_ci([1, 2, 3, 4, 5], confidence=0.90)["ci_high"] == pytest.approx(3 + 2.131847 * 1.581139 / 5**0.5)
    # one value: no spread to estimate; NaN is left out and not counted; nothing: all None
    assert mean_ci([2.0]) == {"mean": 2.0, "ci_low": None, "ci_high": None, "n": 1}
    assert mean_ci([2.0, math.nan])["n"] == 1
    assert mean_ci([]) == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}


def test_question_groups_follow_the_files_answer_and_count():
    assert question_groups("no", "two", by_count=True) == ["muted", "muted/two"]
    assert question_groups(" Yes ", "three", by_count=True) == ["control", "control/three"]
    assert question_groups("no", "two", by_count=False) == ["muted"]
    with pytest.raises(ValueError, match="'yes' or 'no'"):
        question_groups("maybe", "two", by_count=False)


def test_group_summaries_on_hand_made_records():
    def record(groups, entropy, p_yes):
        return {"groups": groups, "entropy": entropy, "p_yes": p_yes, "yes_no_mass": [1, 1], "answer_rank": [1, 1]}

    records = [
        record(["muted", "muted/two"], [1.0, 2.0], [0.9, 0.8]),
        record(["muted", "muted/three"], [3.0, 4.0], [0.7, 0.6]),
        record(["control", "control/two"], [5.0, 6.0], [0.5, math.nan]),
    ]
    summary = summarize_groups(records)
    assert list(summary) == ["muted", "muted/two", "muted/three", "control", "control/two"]
    muted = summary["muted"]
    assert muted["n"] == 2 and [len(muted[k]) for k in ("entropy", "p_yes")] == [2, 2]
    assert [p["mean"] for p in muted["entropy"]] == pytest.approx([2.0, 3.0])
    # entropies 1 and 3: s = sqrt 2, t(0.975, 1) = 12.706205 -> 2 +- 12.706205, clipped at 0 below
    assert muted["entropy"][0]["ci_low"] == 0.0
    assert muted["entropy"][0]["ci_high"] == pytest.approx(2 + 12.706205, abs=1e-5)
    assert [p["mean"] for p in muted["p_yes"]] == pytest.approx([0.8, 0.7])
    assert muted["p_yes"][1]["ci_high"] == 1.0  # 0.7 + 12.7 * 0.1 clipped at 1
    assert summary["muted/two"]["entropy"][1] == {"layer": 1, "mean": 2.0, "ci_low": None, "ci_high": None, "n": 1}
    # the control's last-layer P(yes) is NaN: n counts the values averaged
    assert summary["control"]["p_yes"][1]["n"] == 0 and summary["control"]["p_yes"][0]["n"] == 1
    with pytest.raises(ValueError, match="different numbers of layers"):
        summarize_groups([*records, record(["muted"], [1.0], [0.5])])


def test_muted_minus_control_is_paired_within_each_clip():
    def record(video_id, kind, entropy, p_yes):
        return {"video_id": video_id, "groups": [kind, f"{kind}/two"], "entropy": entropy, "p_yes": p_yes}

    records = [
        record("A", "muted", [1.0, 2.0], [0.9, 0.9]),
        record("A", "control", [0.5, 1.0], [0.8, 0.7]),
        record("B", "muted", [2.0, 2.0], [0.6, 0.6]),
        record("B", "control", [1.0, 1.0], [0.5, 0.5]),  # B has two controls: their mean is what is subtracted
        record("B", "control", [1.0, 3.0], [0.5, 0.3]),
        record("C", "muted", [9.0, 9.0], [0.0, 0.0]),  # no control on C: not paired, left out
    ]
    diff = paired_differences(records)
    assert diff["n_clips"] == 2
    # layer 0 entropy: A 1 - 0.5 = 0.5, B 2 - 1 = 1; mean 0.75, s = 0.353553, t(0.975, 1) = 12.706205
    # -> 0.75 +- 12.706205 * 0.353553 / sqrt 2 = 0.75 +- 3.176551 (a difference is not clipped)
    first = diff["entropy"][0]
    assert (first["mean"], first["ci_low"], first["ci_high"], first["n"]) == pytest.approx(
        (0.75, -2.426551, 3.926551, 2)
    )
    # layer 1: A 2 - 1 = 1, B 2 - (1 + 3) / 2 = 0: mean 0.5; P(yes) layer 1: A 0.2, B 0.6 - 0.4 = 0.2
    assert diff["entropy"][1]["mean"] == pytest.approx(0.5)
    assert diff["p_yes"][1]["mean"] == pytest.approx(0.2) and diff["p_yes"][1]["ci_high"] == pytest.approx(0.2)
    # the published file has no controls: nothing to pair
    assert paired_differences([r for r in records if r["groups"][0] == "muted"]) is None


def test_the_maths_and_the_command_line_import_no_model_code(tmp_path):
    from conftest import run_python

    probe = (
        "import json, sys\n"
        "import verl_avconfuse.diagnosis.stats, verl_avconfuse.diagnosis.cli\n"
        "print(json.dumps([m for m in ('torch', 'transformers', 'verl', 'scipy') if m in sys.modules]))\n"
    )
    result = run_python(["-c", probe], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# ------------------------------------------------------------------ a model that decides at a known layer

VOCAB, HIDDEN, LAYERS, DECIDING_LAYER = 16, 8, 4, 3
TARGET, OTHER = 5, 9  # the token the model comes to predict ("yes"), and the "no" token
#: The deciding layer's logit for TARGET: P(TARGET) = 0.9 against 15 tokens at logit 0.
TARGET_LOGIT = math.log(0.9 * (VOCAB - 1) / 0.1)


def deciding_model():
    """A Qwen2 decoder whose residual stream is zero until layer 3 writes one direction into it.

    Embeddings are zero and every layer's output projections (attention ``o_proj``, MLP ``down_proj``) are
    zero except layer 3's attention: its value bias is 1, so whatever the attention weights its output is
    all ones, and ``o_proj`` maps that to ``s * e_0``. The final RMSNorm turns ``s * e_0`` into
    ``sqrt(HIDDEN) * e_0`` and ``lm_head`` reads ``e_0`` into TARGET's logit only. So the next-token
    distribution is uniform (entropy ln 16) through layer 2 and P(TARGET) = 0.9 from layer 3 on.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=16,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        rms_norm_eps=1e-12,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        for index, layer in enumerate(model.model.layers, start=1):
            layer.mlp.down_proj.weight.zero_()
            layer.self_attn.o_proj.weight.zero_()
            if index == DECIDING_LAYER:
                layer.self_attn.v_proj.bias.fill_(1.0)
                layer.self_attn.o_proj.weight[0].fill_(0.37 / layer.self_attn.o_proj.in_features)
        model.lm_head.weight.zero_()
        model.lm_head.weight[TARGET, 0] = TARGET_LOGIT / math.sqrt(HIDDEN)
    return model


def test_a_model_uncertain_until_a_known_layer_gives_that_curve():
    model = deciding_model()
    lens = LogitLens(model)
    assert lens.n_layers == LAYERS + 1
    ids = torch.tensor([[1, 2, 3, 4], [7, 7, 0, 3]])
    logits, final = lens.forward({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    decided = -(0.9 * math.log(0.9) + (VOCAB - 1) * (0.1 / (VOCAB - 1)) * math.log(0.1 / (VOCAB - 1)))
    expected_entropy = [math.log(VOCAB)] * DECIDING_LAYER + [decided] * (LAYERS + 1 - DECIDING_LAYER)
    # P(yes) / (P(yes) + P(no)) with one yes and one no token: 1/2 while uniform, 0.9 / (0.9 + 0.1/15) after
    expected_p_yes = [0.5] * DECIDING_LAYER + [0.9 / (0.9 + 0.1 / 15)] * (LAYERS + 1 - DECIDING_LAYER)
    for row in range(2):
        assert int(final[row].argmax()) == TARGET
        out = layer_readout(logits[row], [TARGET], [OTHER], TARGET)
        assert out["entropy"] == pytest.approx(expected_entropy, abs=1e-5)
        assert out["p_yes"] == pytest.approx(expected_p_yes, abs=1e-5)
        # uniform rows: nothing is strictly above the answer (rank 1 by ties); from layer 3 it is the top token
        assert out["top_token"][DECIDING_LAYER:] == [TARGET] * (LAYERS + 1 - DECIDING_LAYER)


class _Tokenizer:
    """The yes/no rule's view of a tokenizer: "yes" and "no" are one token each, other variants two."""

    def encode(self, text, add_special_tokens=False):
        return {"yes": [TARGET], "no": [OTHER]}.get(text, [1, 2])

    def decode(self, ids):
        return "|".join(f"t{i}" for i in ids)


class _DecidingBackend:
    """Stands in for HFOmniBackend around :func:`deciding_model`: the same ``prompt_features`` contract."""

    name = "hf:deciding"

    def __init__(self):
        self.model = deciding_model()
        self.tokenizer = _Tokenizer()
        self.prefixes = []

    def prompt_features(self, requests, assistant_prefixes):
        self.prefixes.append(list(assistant_prefixes))
        ids = torch.tensor([[3, 1, 4, 1, 5][: 2 + len(r.question) % 3] for r in requests][:1] * len(requests))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_diagnose_groups_the_known_curve_and_writes_it(tmp_path):
    from verl_avconfuse.diagnosis.layer_entropy import (
        DiagnosisQuestion,
        answer_tokens,
        build_result,
        diagnose,
        load_result,
        write_outputs,
    )

    backend = _DecidingBackend()
    questions = [
        DiagnosisQuestion(f"q{i}", f"{i:06d}", "Is there a violin sound?", answer, "two", "clip.mp4", tuple(groups))
        for i, (answer, groups) in enumerate([("no", ["muted"]), ("no", ["muted"]), ("yes", ["control"])])
    ]
    records, checks = diagnose(backend, questions, prompt="rl-comm", batch_size=2)
    assert backend.prefixes == [["<answer>", "<answer>"], ["<answer>"]]
    assert checks["last_layer_max_abs_logprob_diff"] < 1e-5
    assert [r["final_polarity"] for r in records] == ["yes"] * 3
    result = build_result(
        records,
        model=backend.name,
        model_type="qwen2",
        questions_file="q.json",
        video_dir="clips",
        prompt="rl-comm",
        answer_prefix="<answer>",
        tokens=answer_tokens(backend.tokenizer),
        checks=checks,
    )
    assert result["layers"] == [0, 1, 2, 3, 4] and result["num_hidden_layers"] == LAYERS
    assert result["yes_tokens"] == {"yes": TARGET} and result["no_tokens"] == {"no": OTHER}
    muted = result["groups"]["muted"]
    assert muted["n"] == 2 and result["groups"]["control"]["n"] == 1
    assert result["muted_minus_control"] is None  # three clips, none with both kinds
    assert [p["mean"] for p in muted["entropy"]] == pytest.approx([math.log(VOCAB)] * 3 + [0.5959] * 2, abs=1e-4)
    # identical questions: a zero-width interval
    assert muted["entropy"][4]["ci_high"] - muted["entropy"][4]["ci_low"] == pytest.approx(0.0, abs=1e-9)
    files = write_outputs(result, tmp_path / "out")
    stored = load_result(tmp_path / "out")
    assert stored["groups"]["muted"]["entropy"][0]["mean"] == pytest.approx(math.log(VOCAB))
    assert (
        "| 0 (embedding output) | 2.773 [2.773, 2.773] | 2.773 |" in (tmp_path / "out" / "layer_entropy.md").read_text()
    )
    assert set(files) >= {"json", "markdown"}


# ------------------------------------------------------------------------------- the Omni thinkers

CLIP_SECONDS = 2.0


@pytest.fixture(scope="module")
def muted_files(tmp_path_factory):
    """Two clips and a muted questions file: 2 muted (two and three instruments) and 1 control question."""
    from verl_avconfuse.media import tone, write_synthetic_video

    folder = tmp_path_factory.mktemp("muted")
    videos = folder / "videos"
    videos.mkdir()
    for seed, video_id in enumerate(("000001", "000002")):
        write_synthetic_video(
            videos / f"{video_id}.mp4",
            duration_s=CLIP_SECONDS,
            fps=2,
            audio=tone(262 * (seed + 1), CLIP_SECONDS),
            seed=seed,
        )
    question = "Is there a {} sound? \nYour answer can only be 'yes' or 'no'"
    items = [
        {"video_id": "000001", "question": question.format("violin"), "answer": "no", "instruments": "violin, flute", "instruments_len": "two"},
        {"video_id": "000001", "question": question.format("flute"), "answer": "yes", "instruments": "violin, flute", "instruments_len": "two"},
        {"video_id": "000002", "question": question.format("cello"), "answer": "no", "instruments": "cello, flute, piano", "instruments_len": "three"},
    ]  # fmt: skip
    path = folder / "questions.json"
    path.write_text(json.dumps(items))
    return path, videos


@pytest.fixture(scope="module")
def qwen3_thinker(tmp_path_factory):
    """A random tiny Qwen3-Omni thinker (no warm start: seconds to build; its layers are what is tested)."""
    from verl_avconfuse.tiny.models import make_qwen3_omni_thinker

    return make_qwen3_omni_thinker(tmp_path_factory.mktemp("q3") / "thinker", warm_start_steps=0)


def _lens_against_plain_forward(model_path, video, use_audio_in_video):
    from verl_avconfuse.evaluation.backends import EvalRequest, HFOmniBackend

    backend = HFOmniBackend(model_path, dtype="float32", device="cpu", use_audio_in_video=use_audio_in_video)
    requests = [
        EvalRequest(id=str(i), question=q, video=str(video), audio=str(video))
        for i, q in enumerate(("Is there a violin sound?", "Is there a flute sound? Answer yes or no."))
    ]
    inputs = backend.prompt_features(requests, ["<answer>"] * 2)
    with torch.inference_mode():  # the model's own forward, no hooks
        plain = torch.log_softmax(backend.model(**inputs).logits[:, -1].float(), -1)
        # row 0 is the embedding output: at the last (text) position, the token's embedding, normed and unembedded
        last_ids = inputs["input_ids"][:, -1]
        embedded = backend.model.lm_head(backend.model.model.norm(backend.model.model.embed_tokens(last_ids))).float()
    lens, final = LogitLens(backend.model).forward(inputs)
    assert lens.shape == (2, backend.model.config.get_text_config().num_hidden_layers + 1, plain.shape[-1])
    assert lens.dtype == torch.float32
    torch.testing.assert_close(torch.log_softmax(lens[:, -1], -1), plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.softmax(lens[:, -1], -1), plain.exp(), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.log_softmax(final, -1), plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(lens[:, 0], embedded, atol=1e-5, rtol=0)
    # the intermediate rows are not the last one (the lens reads each layer, not the output n times)
    assert (lens[:, 1] - lens[:, -1]).abs().max() > 1e-3


@pytest.mark.parametrize("use_audio_in_video", [False, True], ids=["audio-item", "audio-in-video"])
def test_last_layer_is_the_models_own_distribution_qwen2_5_omni(tiny_asset, muted_files, use_audio_in_video):
    _lens_against_plain_forward(tiny_asset("models/omni_thinker"), muted_files[1] / "000001.mp4", use_audio_in_video)


@pytest.mark.parametrize("use_audio_in_video", [False, True], ids=["audio-item", "audio-in-video"])
def test_last_layer_is_the_models_own_distribution_qwen3_omni(qwen3_thinker, muted_files, use_audio_in_video):
    _lens_against_plain_forward(qwen3_thinker, muted_files[1] / "000002.mp4", use_audio_in_video)


# ------------------------------------------------------------------------------------------ the command


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_command_writes_one_entry_per_layer_for_each_group(tiny_asset, muted_files, tmp_path, capsys):
    questions, videos = muted_files
    out = tmp_path / "out"
    model = tiny_asset("models/omni_thinker")
    code, stdout, stderr = _run(
        ["diagnose", "layer-entropy", "--questions", questions, "--video-dir", videos, "--backend", f"hf:{model}",
         "--out", out, "--no-progress", "--batch-size", "2"],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    result = json.loads((out / "layer_entropy.json").read_text())
    rows = result["num_hidden_layers"] + 1
    assert result["embedding_output_included"] is True and rows == 3 and result["layers"] == [0, 1, 2]
    # muted vs control, and by instrument count since the file has two counts
    assert set(result["groups"]) == {"muted", "control", "muted/two", "muted/three", "control/two"}
    assert result["group_by"] == ["answer", "instruments_len"]
    assert [result["groups"][g]["n"] for g in ("muted", "control")] == [2, 1]
    # clip 000001 has a muted and a control question, 000002 only a muted one
    assert result["muted_minus_control"]["n_clips"] == 1
    assert len(result["muted_minus_control"]["entropy"]) == 3
    for group in result["groups"].values():
        for name in ("entropy", "p_yes", "yes_no_mass", "answer_rank"):
            assert [p["layer"] for p in group[name]] == [0, 1, 2]
            assert all(p["n"] == group["n"] for p in group[name])
    assert result["checks"]["last_layer_max_abs_logprob_diff"] < 1e-4  # saved as float32: as the model's
    assert all(r["answer_rank"][-1] == 1 for r in result["questions"])
    assert result["commit"] and result["date"] and result["command"].startswith("avconfuse diagnose layer-entropy")
    assert (out / "layer_entropy.md").is_file() and (out / "layer_entropy.png").stat().st_size > 0
    assert "3 rows (embedding output + 2 layers)" in stdout


def test_two_backends_and_a_stored_result_are_compared(tiny_asset, qwen3_thinker, muted_files, tmp_path, capsys):
    questions, videos = muted_files
    out = tmp_path / "both"
    code, stdout, stderr = _run(
        ["diagnose", "layer-entropy", "--questions", questions, "--video-dir", videos, "--limit", "2",
         "--backend", f"hf:{tiny_asset('models/omni_thinker')}", "--backend", f"hf:{qwen3_thinker}",
         "--label", "qwen2.5", "--label", "qwen3", "--out", out, "--no-progress", "--prompt", "paper"],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    for label in ("qwen2.5", "qwen3"):
        result = json.loads((out / label / "layer_entropy.json").read_text())
        assert result["answer_prefix"] == "" and len(result["groups"]["muted"]["entropy"]) == 3
    assert json.loads((out / "qwen3" / "layer_entropy.json").read_text())["model_type"] == "qwen3_omni_moe_thinker"
    assert "qwen2.5: muted" in (out / "layer_entropy.compare.md").read_text()
    # plotting stored runs needs no model
    again = tmp_path / "plots"
    code, _, stderr = _run(
        ["diagnose", "layer-entropy", "--compare", out / "qwen2.5", "--compare", out / "qwen3" / "layer_entropy.json",
         "--out", again],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    assert (again / "layer_entropy.compare.png").is_file() and not (again / "layer_entropy.json").exists()


def test_missing_clip_is_one_line_naming_the_file_and_keeps_the_previous_result(
    tiny_asset, muted_files, tmp_path, capsys
):
    questions, videos = muted_files
    items = json.loads(questions.read_text())
    items.append({**items[0], "video_id": "000404"})
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(items))
    out = tmp_path / "out"
    out.mkdir()
    (out / "layer_entropy.json").write_text('{"kept": true}\n')
    code, stdout, stderr = _run(
        ["diagnose", "layer-entropy", "--questions", broken, "--video-dir", videos,
         "--backend", f"hf:{tiny_asset('models/omni_thinker')}", "--out", out, "--no-progress"],
        capsys,
    )  # fmt: skip
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avconfuse diagnose layer-entropy: error: ")
    assert str(broken) in lines[0] and "000404.mp4" in lines[0] and "--skip-bad" in lines[0]
    assert (out / "layer_entropy.json").read_text() == '{"kept": true}\n'


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--compare", "nowhere.json"], "--compare nowhere.json: no such file"),
        (["--backend", "jsonl:preds.jsonl", "--questions", "q.json", "--video-dir", "."], "expected hf:MODEL_DIR"),
        (["--backend", "hf:/no/such/model", "--questions", "q.json", "--video-dir", "."], "no such folder"),
        ([], "give --backend hf:MODEL_DIR"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code, _, stderr = _run(["diagnose", "layer-entropy", "--out", tmp_path / "o", *argv], capsys)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_a_modified_setting_file_is_refused_by_name(tiny_asset, tmp_path, capsys):
    path = tmp_path / "m2.json"
    path.write_text(
        json.dumps([{"video_id": "1", "filename": "a.mp4", "question": "q", "sound_type": "rain", "annotation": "a"}])
    )
    code, _, stderr = _run(
        ["diagnose", "layer-entropy", "--questions", path, "--video-dir", tmp_path,
         "--backend", f"hf:{tiny_asset('models/omni_thinker')}", "--out", tmp_path / "o"],
        capsys,
    )  # fmt: skip
    assert code == 2 and f"{path}: a modified-setting file" in stderr
