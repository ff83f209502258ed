"""The ablation replica's synthetic confusion task (verl_avconfuse/tiny/confusion.py) and its scoring
(benchmarks/ablation_replica.py): what is drawn, heard, asked and counted."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from verl_avconfuse.tiny import confusion
from verl_avconfuse.tiny.confusion import GLYPHS, Piece

from conftest import REPO, verl_trainer_config

sys.path.insert(0, str(REPO / "benchmarks"))
import ablation_replica  # noqa: E402


def test_each_instrument_is_drawn_in_its_own_colour_in_its_own_half():
    frame = confusion.scene_frame(("violin", "piano"), k=0, size=(64, 48))
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    # slot centres: (16, 24) and (48, 24); frame 0 bobs the left glyph by 0 px, the right by 2 px
    assert tuple(frame[24, 16]) == GLYPHS["violin"][0]
    assert tuple(frame[26, 48]) == GLYPHS["piano"][0]
    assert tuple(frame[0, 0]) == confusion.BACKGROUND
    left, right = frame[:, :32], frame[:, 32:]
    assert not (left == GLYPHS["piano"][0]).all(axis=-1).any()
    assert not (right == GLYPHS["violin"][0]).all(axis=-1).any()
    # every instrument looks different (colour and outline)
    drawn = {name: confusion.scene_frame((name, name), k=0).tobytes() for name in confusion.INSTRUMENTS}
    assert len(set(drawn.values())) == len(confusion.INSTRUMENTS)
    assert len({colour for colour, _ in GLYPHS.values()}) == len(GLYPHS)


def test_pieces_rest_exactly_the_asked_share_and_hear_only_what_is_seen():
    pieces = confusion.sample_pieces(16, seed=3, rest_fraction=0.5)
    resting = [p for p in pieces if len(p.heard) == 1]
    assert len(resting) == 8
    for piece in pieces:
        assert len(set(piece.seen)) == 2 and set(piece.heard) <= set(piece.seen)
    assert confusion.sample_pieces(16, seed=3, rest_fraction=0.5) == pieces
    assert all(p.heard == p.seen for p in confusion.sample_pieces(5, seed=3))


def test_questions_are_answered_by_what_is_heard_not_what_is_seen():
    piece = Piece("p", ("violin", "piano"), ("piano",))
    asked = confusion.questions(piece, random.Random(0), absent=True)
    assert asked[:2] == [("Is there a violin sound?", "no"), ("Is there a piano sound?", "yes")]
    question, answer = asked[2]
    assert answer == "no" and not any(i in question for i in piece.seen)
    rows = confusion.rl_rows([piece], {"p": "/clips/p.mp4"}, seed=0, split="train")
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["no", "yes", "no"]
    assert rows[0]["prompt"][0]["content"].startswith("<video><audio>\nIs there a violin sound? First think")
    assert rows[0]["videos"] == rows[0]["audios"] == ["/clips/p.mp4"]
    assert rows[0]["extra_info"]["heard"] == "piano"
    # a kept clip is only reused for the same picture and sound
    assert confusion.clip_name(piece, audio=True) == "p-violin+piano-piano.mp4"
    assert (
        confusion.clip_name(Piece("p", ("violin", "piano"), ("violin", "piano")), audio=True)
        != "p-violin+piano-piano.mp4"
    )
    assert confusion.clip_name(piece, audio=False) == "p-violin+piano-video-only.mp4"


def _power_at(samples: np.ndarray, sr: int, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(len(samples), 1 / sr)
    return float(spectrum[np.abs(freqs - hz) < 5].max())


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return confusion.build_confusion_task(tmp_path_factory.mktemp("confusion"), n_sft=2, n_rl=2, n_test=2, seed=0)


def test_the_task_files_follow_the_warmup_rl_and_muted_formats(task):
    sft = pd.read_parquet(task.sft_parquet)
    # 2 sync pieces x (2 seen + 1 absent instrument)
    assert len(sft) == 6
    assert [m["role"] for m in sft.iloc[0]["messages"]] == ["user", "assistant"]
    assert sft.iloc[0]["messages"][0]["content"].startswith("<video><audio>\nIs there a ")
    reply = sft.iloc[0]["messages"][1]["content"]
    assert reply.startswith("<a-think> ") and reply.endswith(("<answer> yes </answer>", "<answer> no </answer>"))
    rl = pd.read_parquet(task.rl_train)
    assert len(rl) == 6 and set(rl["data_source"]) == {confusion.DATA_SOURCE}
    references = [json.loads(line) for line in task.reference_examples.read_text().splitlines()]
    assert [r["answer"] for r in references] == [r["ground_truth"] for r in rl["reward_model"]]
    muted = json.loads(task.muted_json.read_text())
    # 2 test pieces x 2 instruments muted in turn, each with its control (the other instrument, still heard)
    assert [item["answer"] for item in muted] == ["no", "yes"] * 4
    assert all(item["question"] == f"Is there a {item['question'].split()[3]} sound?" for item in muted)


def test_a_muted_clip_keeps_the_picture_and_only_the_other_instruments_tone(task):
    from verl_avconfuse.media import load_audio

    muted = json.loads(task.muted_json.read_text())
    item, control = muted[0], muted[1]
    silent = item["question"].split()[3]
    heard = control["question"].split()[3]
    samples = load_audio(task.muted_videos / f"{item['video_id']}.mp4", sr=16000)
    hz = confusion.INSTRUMENT_TONES_HZ
    assert _power_at(samples, 16000, hz[heard]) > 100 * _power_at(samples, 16000, hz[silent])
    assert set(item["instruments"].split(", ")) == {silent, heard}


def _dump(path, rows):
    """verl's validation dump: the decoded prompt, the reply, the ground truth (and verl's other fields)."""
    lines = []
    for i, (asked, truth, output) in enumerate(rows):
        prompt = f"user\nIs there a {asked} sound? First think about what you hear ...\nassistant\n"
        lines.append(
            json.dumps({"input": prompt, "output": output, "gts": truth, "score": 0.0, "step": 12, "uid": f"u{i}"})
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scoring_grades_verls_validation_dump_by_the_strict_rule(tmp_path):
    formatted = "<a-think> {a} </a-think> <v-think> I see a violin and a piano. </v-think>\n<answer> {answer} </answer>"
    dump = _dump(
        tmp_path / "12.jsonl",
        [
            ("violin", "no", formatted.format(a="I hear a piano.", answer="yes")),
            ("violin", "no", formatted.format(a="I hear two instruments: a violin and a piano.", answer="no")),
            ("violin", "no", "No."),
            ("violin", "no", "I cannot tell"),
            ("piano", "yes", formatted.format(a="I hear a piano.", answer="yes")),
            ("piano", "yes", "<answer> no </answer>"),
        ],
    )
    scores = ablation_replica.score_generations(dump)
    assert scores["n_muted"] == 4 and scores["n_controls"] == 2
    # right on the muted items: "no" and "No." (2 of 4); "yes" once; "I cannot tell" is neither (the
    # release's substring rule would count it right: "ca-n-no-t")
    assert scores["muted_accuracy"] == 50.0 and scores["paper_yes_rate"] == 50.0
    assert scores["says_yes_on_muted"] == 25.0
    assert scores["control_accuracy"] == 50.0 and scores["balanced_accuracy"] == 50.0
    # the a-think of one muted item of 4 names the muted violin; one control of 2 names the piano it hears
    assert scores["a_think_hears_muted"] == 25.0 and scores["a_think_hears_control"] == 50.0
    # well-formed: the three replies with all three blocks
    assert scores["format_rate"] == 50.0


def test_a_dump_without_the_tasks_question_is_refused(tmp_path):
    dump = _dump(tmp_path / "0.jsonl", [("violin", "no", "no")])
    dump.write_text(dump.read_text().replace("Is there a violin sound?", "What do you hear?"))
    with pytest.raises(ValueError, match=r"0.jsonl: uid u0: expected a question"):
        ablation_replica.score_generations(dump)


def test_the_summary_is_the_mean_and_spread_over_seeds():
    def run(arm, seed, muted):
        metrics = {m: 10.0 for m in ablation_replica.REPORTED}
        return {"arm": arm, "seed": seed, "before": dict(metrics), "after": {**metrics, "muted_accuracy": muted}}

    summary = ablation_replica.summarize([run("grpo", 0, 20.0), run("grpo", 1, 40.0), run("step_rr", 0, 50.0)])
    assert summary["grpo"]["muted_accuracy"] == (30.0, pytest.approx(14.1421356))
    assert summary["step_rr"]["muted_accuracy"] == (50.0, 0.0)
    assert summary["warm_start"]["muted_accuracy"] == (10.0, 0.0)
    assert "step_rr_ansco" not in summary
    table = ablation_replica.markdown(summary)
    assert "| GRPO (format + accuracy) | 2 | 30.0 ± 14.1 |" in table


def test_the_reference_is_fitted_on_the_reference_workers_own_prompt(tiny_asset, task):
    from transformers import AutoProcessor

    from verl_avconfuse.reference.backends import reference_messages
    from verl_avconfuse.reference.cache import ReferenceRequest

    processor = AutoProcessor.from_pretrained(tiny_asset("models/qwen2_audio"))
    example = json.loads(task.reference_examples.read_text().splitlines()[0])
    inputs = confusion._reference_inputs(processor, [example], with_target=True)
    labels = inputs["labels"][0]
    target = processor.tokenizer.decode(labels[labels >= 0])
    assert target == f"<a-think> {example['a_think']} </a-think><|im_end|>"
    length = int(inputs["prompt_lengths"][0])
    prompt = processor.apply_chat_template(
        reference_messages(ReferenceRequest(example["audio"], example["question"], example["answer"])),
        add_generation_prompt=True,
        tokenize=False,
    )
    expected = processor(
        text=[prompt], audio=[confusion._audio(example["audio"], 16000)], sampling_rate=16000, return_tensors="pt"
    )
    assert inputs["input_ids"][0, :length].tolist() == expected["input_ids"][0].tolist()
    assert confusion.names_heard(example["a_think"]) == set(example["heard"])


@pytest.mark.parametrize("recipe", ["grpo_baseline", "avconfuse", "avconfuse_ansco"])
def test_every_arm_trains_with_the_same_budget_and_is_validated_greedily(recipe):
    config = verl_trainer_config(f"+recipe={recipe}", "+machine=cpu_ablation")
    assert config.actor_rollout_ref.actor.optim.lr == 2e-4
    assert (config.data.train_batch_size, config.actor_rollout_ref.rollout.n) == (4, 6)
    assert config.trainer.total_training_steps == config.trainer.test_freq == 12
    assert config.trainer.val_before_train is True and config.data.shuffle is True
    assert config.actor_rollout_ref.rollout.val_kwargs.do_sample is False
    assert config.actor_rollout_ref.rollout.val_kwargs.n == 1
    # the arms differ only in their recipe: reward and loss
    assert config.avconfuse.reference.enable is (recipe != "grpo_baseline")
    assert config.avconfuse.get("ans_co", {}).get("enable", False) is (recipe == "avconfuse_ansco")


def test_the_warmup_sft_machine_composes_with_verls_sft_trainer():
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(
            config_name="sft_trainer_engine", overrides=["+recipe=sft_warmup", "+machine=cpu_ablation_sft"]
        )
    assert config.trainer.device == "cpu" and config.trainer.total_epochs == 27
    assert (config.data.train_batch_size, config.optim.lr) == (8, 5e-3)
    assert config.engine.mixed_precision.param_dtype == "fp32" and config.engine.dtype == "float32"
    assert config.data.custom_cls.name == "OmniSFTDataset"
