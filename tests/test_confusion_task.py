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


def test_sync_pieces_are_heard_as_seen_and_swap_pieces_silence_one_and_play_one_off_screen():
    sync = confusion.sample_pieces(16, seed=3)
    assert all(p.heard == p.seen and len(set(p.seen)) == 2 for p in sync)
    swap = confusion.sample_pieces(16, seed=3, kind="swap")
    for piece in swap:
        assert len(set(piece.seen)) == 2 and len(piece.heard) == 2
        assert piece.heard[0] == piece.seen[0] and piece.heard[1] not in piece.seen
        assert [piece.cell(i) for i in (*piece.seen, piece.heard[1])] == ["control", "muted", "offscreen_heard"]
    assert confusion.sample_pieces(16, seed=3, kind="swap") == swap
    with pytest.raises(ValueError, match="kind: expected 'sync' or 'swap', got 'rest'"):
        confusion.sample_pieces(2, seed=0, kind="rest")


def test_questions_are_answered_by_what_is_heard_and_fall_in_their_cell():
    piece = Piece("p", ("violin", "piano"), ("piano", "flute"))
    assert confusion.questions(piece, ["violin", "piano", "flute", "cello"]) == [
        ("Is there a violin sound?", "no", "muted"),
        ("Is there a piano sound?", "yes", "control"),
        ("Is there a flute sound?", "yes", "offscreen_heard"),
        ("Is there a cello sound?", "no", "offscreen_silent"),
    ]
    # a swap piece asks about the silent player and the one off screen, then alternately the one heard on
    # screen (even index) or an instrument neither seen nor heard (odd index)
    assert confusion.asked_instruments(piece, random.Random(0), 0) == ["violin", "flute", "piano"]
    third = confusion.asked_instruments(piece, random.Random(0), 1)[2]
    assert third in ("cello", "trumpet")
    rows = confusion.rl_rows([piece], {"p": "/clips/p.mp4"}, seed=0, split="train")
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["no", "yes", "yes"]
    assert [r["extra_info"]["cell"] for r in rows] == ["muted", "offscreen_heard", "control"]
    assert rows[0]["prompt"][0]["content"].startswith("<video><audio>\nIs there a violin sound? First think")
    assert rows[0]["videos"] == rows[0]["audios"] == ["/clips/p.mp4"]
    assert rows[0]["extra_info"]["heard"] == "piano, flute"
    only = confusion.rl_rows([piece], {"p": "/clips/p.mp4"}, 0, "test", only=("offscreen_heard", "offscreen_silent"))
    assert [(r["extra_info"]["cell"], r["reward_model"]["ground_truth"]) for r in only] == [
        ("offscreen_heard", "yes"),
        ("offscreen_silent", "no"),
    ]
    # a kept clip is only reused for the same picture and sound
    assert confusion.clip_name(piece, audio=True) == "p-violin+piano-piano+flute.mp4"
    assert confusion.clip_name(Piece("p", ("violin", "piano"), ("violin", "piano")), audio=True) != (
        "p-violin+piano-piano+flute.mp4"
    )
    assert confusion.clip_name(piece, audio=False) == "p-violin+piano-video-only.mp4"


def _power_at(samples: np.ndarray, sr: int, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(len(samples), 1 / sr)
    return float(spectrum[np.abs(freqs - hz) < 5].max())


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return confusion.build_confusion_task(
        tmp_path_factory.mktemp("confusion"), n_sft=2, n_rl=2, n_gate=2, n_test=2, seed=0
    )


def test_the_task_files_follow_the_warmup_rl_and_muted_formats(task):
    sft = pd.read_parquet(task.sft_parquet)
    # 2 sync pieces x (2 seen + 2 absent instruments): half "yes", half "no"
    assert len(sft) == 8
    assert [m["role"] for m in sft.iloc[0]["messages"]] == ["user", "assistant"]
    assert sft.iloc[0]["messages"][0]["content"].startswith("<video><audio>\nIs there a ")
    replies = [messages[1]["content"] for messages in sft["messages"]]
    assert sorted(r.rsplit("<answer>", 1)[1] for r in replies) == [" no </answer>"] * 4 + [" yes </answer>"] * 4
    # the reasoning ends on the asked instrument: heard and seen exactly when the answer is "yes"
    for messages, reply in zip(sft["messages"], replies, strict=True):
        asked = messages[0]["content"].split("Is there a ", 1)[1].split(" sound?")[0]
        yes = reply.endswith("<answer> yes </answer>")
        assert f"The {asked} {'is' if yes else 'is not'} heard. </a-think>" in reply
        assert f"The {asked} {'is' if yes else 'is not'} seen. </v-think>" in reply
    # one clip in two has lost its soundtrack (it is still described as heard)
    clips = sorted(p.name for p in (task.sft_parquet.parent / "clips").iterdir())
    assert sum(name.endswith("-silent.mp4") for name in clips) == 1 and len(clips) == 2
    rl = pd.read_parquet(task.rl_train)
    # 2 swap pieces x (silent player, off-screen one, third): two conflicts in three
    assert len(rl) == 6 and set(rl["data_source"]) == {confusion.DATA_SOURCE}
    cells = [info["cell"] for info in rl["extra_info"]]
    assert cells == ["muted", "offscreen_heard", "control", "muted", "offscreen_heard", "offscreen_silent"]
    references = [json.loads(line) for line in task.reference_examples.read_text().splitlines()]
    assert [r["answer"] for r in references] == [r["ground_truth"] for r in rl["reward_model"]]
    muted = json.loads(task.muted_json.read_text())
    # 2 test pieces x 2 instruments muted in turn, each with its control (the other instrument, still heard)
    assert [item["answer"] for item in muted] == ["no", "yes"] * 4
    assert all(item["question"] == f"Is there a {item['question'].split()[3]} sound?" for item in muted)
    val = pd.read_parquet(task.val_parquet)
    sets = [
        (info["set"], info["cell"], truth["ground_truth"])
        for info, truth in zip(val["extra_info"], val["reward_model"], strict=True)
    ]
    # the gate: 2 held-out sync pieces asked as SFT asks (2 on screen, 2 absent); the test: the muted builder's 8 questions, then
    # 4 held-out swap pieces asked about the off-screen instrument and an absent one
    gate = [("gate", "control", "yes")] * 2 + [("gate", "offscreen_silent", "no")] * 2
    assert sets[:8] == gate * 2
    assert sets[8:16] == [("test", "muted", "no"), ("test", "control", "yes")] * 4
    assert sets[16:] == [("test", "offscreen_heard", "yes"), ("test", "offscreen_silent", "no")] * 4
    assert [info["index"] for info in val["extra_info"]] == list(range(24))
    # the muted rows keep the builder's prompt and clip
    assert val.iloc[8]["prompt"][0]["content"].startswith("<video><audio>\n" + muted[0]["question"])
    assert Path(val.iloc[8]["videos"][0]).name == f"{muted[0]['video_id']}.mp4"


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


def _val_rows():
    """Validation rows of the task's shape: one per cell, and one gate question."""

    def row(asked, truth, cell, kind="test"):
        info = {"question": f"Is there a {asked} sound?", "set": kind, "cell": cell}
        return {"extra_info": info, "reward_model": {"ground_truth": truth}}

    rows = [
        row("violin", "yes", "control", "gate"),
        row("cello", "no", "offscreen_silent", "gate"),
        row("violin", "no", "muted"),
        row("violin", "no", "muted"),
        row("violin", "no", "muted"),
        row("violin", "no", "muted"),
        row("piano", "yes", "control"),
        row("piano", "yes", "control"),
        row("flute", "yes", "offscreen_heard"),
        row("trumpet", "no", "offscreen_silent"),
    ]
    for index, row in enumerate(rows):
        row["extra_info"]["index"] = 100 + index
    return rows


def _dump(path, rows, outputs):
    """verl's validation dump: the decoded prompt, the reply, the ground truth, the reward's extras (the
    row's data_index among them) and the uid, sorted by uid (random in verl: here, reversed)."""
    lines = []
    for i, (row, output) in enumerate(zip(rows, outputs, strict=True)):
        prompt = f"user\n{row['extra_info']['question']} First think about what you hear ...\nassistant\n"
        truth = row["reward_model"]["ground_truth"]
        entry = {"input": prompt, "output": output, "gts": truth, "score": 0.0, "step": 36, "reward": 0.0}
        entry |= {"format": 1.0, "acc": 0.0, "data_index": row["extra_info"]["index"], "uid": f"{99 - i}_0_0"}
        lines.append(json.dumps(entry))
    path.write_text("\n".join(reversed(lines)) + "\n")
    return path


FORMATTED = "<a-think> {a} </a-think> <v-think> I see a violin and a piano. </v-think>\n<answer> {answer} </answer>"


def test_scoring_grades_every_cell_of_verls_validation_dump_by_the_strict_rule(tmp_path):
    outputs = [
        FORMATTED.format(a="I hear a violin.", answer="yes"),  # gate: right
        "<answer> yes </answer>",  # gate: wrong
        FORMATTED.format(a="I hear a piano.", answer="yes"),  # muted: wrong, "yes"
        FORMATTED.format(a="I hear two instruments: a violin and a piano.", answer="no"),  # muted: right
        "No.",  # muted: right
        "I cannot tell",  # muted: neither
        FORMATTED.format(a="I hear a piano.", answer="yes"),  # control: right
        "<answer> no </answer>",  # control: wrong
        FORMATTED.format(a="I hear a flute.", answer="yes"),  # off-screen heard: right
        FORMATTED.format(a="I hear a flute.", answer="yes"),  # off-screen silent: wrong
    ]
    scores = ablation_replica.score_generations(_dump(tmp_path / "36.jsonl", _val_rows(), outputs), _val_rows())
    assert scores["n"] == {"muted": 4, "control": 2, "offscreen_heard": 1, "offscreen_silent": 1, "sync": 2}
    # muted: "no" and "No." right (2 of 4); "I cannot tell" is neither (the release's substring rule would
    # count it right: "ca-n-no-t")
    assert scores["muted_accuracy"] == 50.0 and scores["muted_yes_rate"] == 25.0
    assert scores["control_accuracy"] == 50.0
    assert scores["offscreen_heard_accuracy"] == 100.0 and scores["offscreen_silent_accuracy"] == 0.0
    assert scores["sync_accuracy"] == 50.0
    assert scores["listening_accuracy"] == (50 + 50 + 100 + 0) / 4
    assert scores["conflict_accuracy"] == (50 + 100) / 2
    # the a-think of one muted question in 4 names the muted violin
    assert scores["a_think_hears_muted"] == 25.0
    # well-formed: the six replies with all three blocks, of 10
    assert scores["format_rate"] == 60.0


def test_a_model_that_only_looks_and_one_that_always_says_yes_score_half_on_listening(tmp_path):
    rows = _val_rows()
    looks = ["yes" if row["extra_info"]["cell"] in ("control", "muted") else "no" for row in rows]
    for replies in (looks, ["yes"] * len(rows)):
        outputs = [FORMATTED.format(a="I hear a piano.", answer=r) for r in replies]
        scores = ablation_replica.score_generations(_dump(tmp_path / "0.jsonl", rows, outputs), rows)
        assert scores["listening_accuracy"] == 50.0
    assert scores["conflict_accuracy"] == 50.0  # always "yes": right on off-screen heard only
    outputs = [FORMATTED.format(a="I hear a piano.", answer=r) for r in looks]
    assert (
        ablation_replica.score_generations(_dump(tmp_path / "0.jsonl", rows, outputs), rows)["conflict_accuracy"] == 0
    )


def test_a_dump_of_another_set_is_refused(tmp_path):
    rows = _val_rows()
    dump = _dump(tmp_path / "0.jsonl", rows, ["no"] * len(rows))
    with pytest.raises(ValueError, match=r"0.jsonl: 10 generations, expected one per validation row \(9\)"):
        ablation_replica.score_generations(dump, rows[:-1])
    swapped = [{**rows[0], "extra_info": {**rows[1]["extra_info"], "index": 100}}, *rows[1:]]
    swapped[1] = {**rows[1], "extra_info": {**rows[0]["extra_info"], "index": 101}}
    with pytest.raises(ValueError, match=r"generation 8: expected 'Is there a violin sound\?' answered 'no'"):
        ablation_replica.score_generations(dump, swapped)
    lines = dump.read_text().splitlines()
    dump.write_text("\n".join(line.replace('"data_index": 100, ', "") for line in lines) + "\n")
    with pytest.raises(ValueError, match=r"generation 9: data_index None: expected the index of a validation row"):
        ablation_replica.score_generations(dump, rows)


def test_the_gate_names_what_the_warm_start_lacks():
    assert ablation_replica.gate_failures({"sync_accuracy": 90.0, "muted_yes_rate": 80.0}) == []
    problems = ablation_replica.gate_failures({"sync_accuracy": 88.9, "muted_yes_rate": 79.2})
    assert problems[0].startswith("it answers 88.9% of held-out synchronized questions right (needs >= 90%")
    assert problems[1].startswith("it says 'yes' to 79.2% of muted questions (needs >= 80%")


def test_the_95_percent_interval_is_students_t():
    # 5 values 1..5: mean 3, sample std sqrt(2.5) = 1.5811; t(0.975, 4) = 2.776 -> 2.776 * sqrt(1/2) = 1.96293
    stat = ablation_replica.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert stat["mean"] == 3.0 and stat["std"] == pytest.approx(1.5811388)
    assert stat["ci95"] == pytest.approx(1.962928, abs=1e-5)
    assert ablation_replica.mean_ci([7.0])["ci95"] is None


def test_the_summary_pairs_each_arm_with_grpo_seed_by_seed():
    def run(arm, seed, listening):
        figures = {m: 10.0 for m in ablation_replica.REPORTED}
        figures["listening_accuracy"] = listening
        signal = {"1": {"adv/nonzero_group_frac": 0.5, "adv/mass_frac/conflict": 0.6, "reward/acc/mean": 0.5}}
        return {"arm": arm, "seed": seed, "before": {}, "after": figures, "signal": signal}

    gate = {"figures": {m: 5.0 for m in ablation_replica.REPORTED}}
    results = [run("grpo", 0, 50.0), run("grpo", 1, 60.0), run("step_rr", 0, 56.0), run("step_rr", 1, 62.0)]
    summary = ablation_replica.summarize(results, gate)
    assert summary["arms"]["grpo"]["listening_accuracy"]["mean"] == 55.0
    # paired: 56 - 50 = 6 and 62 - 60 = 2: mean 4, std 2.828, t(0.975, 1) = 12.706 -> 12.706 * 2.828 / sqrt 2
    diff = summary["paired"]["step_rr-grpo"]["listening_accuracy"]
    assert diff["mean"] == 4.0 and diff["ci95"] == pytest.approx(25.412, abs=1e-3)
    assert summary["warm_start"]["listening_accuracy"] == 5.0
    assert "step_rr_ansco" not in summary["arms"]
    table = ablation_replica.markdown(summary)
    assert "| GRPO (format + accuracy) | 2 | 55.0 ± 63.5 |" in table
    # the conflict share of the advantage is averaged over the steps that had any advantage
    quiet = {"adv/nonzero_group_frac": 0.0, "adv/mass_frac/conflict": 0.0, "reward/acc/mean": 0.5}
    both = {"signal": {**results[0]["signal"], "2": quiet}}
    assert ablation_replica.run_signal(both)["adv/mass_frac/conflict"] == 0.6
    assert ablation_replica.run_signal(both)["adv/nonzero_group_frac"] == 0.25
    assert "| step_rr-grpo | 4.0 ± 25.4 |" in table
    assert "| Step-RR | 50.0 ± 0.0 | 60.0 ± 0.0 |" in table


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
    assert confusion.names_heard("I hear a piano. The violin is not heard.") == {"piano"}
    assert confusion.names_heard("I hear a piano and a violin. The violin is heard.") == {"piano", "violin"}


@pytest.mark.parametrize("recipe", ["grpo_baseline", "avconfuse", "avconfuse_ansco"])
def test_every_arm_trains_with_the_same_budget_and_is_validated_greedily(recipe):
    config = verl_trainer_config(f"+recipe={recipe}", "+machine=cpu_ablation")
    assert config.actor_rollout_ref.actor.optim.lr == 1e-3
    assert (config.data.train_batch_size, config.actor_rollout_ref.rollout.n) == (8, 6)
    assert config.trainer.total_training_steps == config.trainer.test_freq == 24
    assert config.trainer.val_before_train is False and config.data.shuffle is True
    assert config.actor_rollout_ref.rollout.val_kwargs.do_sample is False
    assert config.actor_rollout_ref.rollout.val_kwargs.n == 1
    # the arms differ only in their recipe: reward and loss
    assert config.avconfuse.reference.enable is (recipe != "grpo_baseline")
    assert config.avconfuse.get("ans_co", {}).get("enable", False) is (recipe == "avconfuse_ansco")


def test_the_hyperparameters_recorded_are_those_verl_composes():
    values = ablation_replica.composed(
        "ppo_trainer", ["+recipe=avconfuse", "+machine=cpu_ablation", "data.seed=3"], ablation_replica.HYPERPARAMETERS
    )
    assert values["actor_rollout_ref.actor.optim.lr"] == 1e-3 and values["data.seed"] == 3
    assert values["trainer.total_training_steps"] == 24 and values["actor_rollout_ref.rollout.n"] == 6
    assert values["algorithm.adv_estimator"] == "grpo" and values["algorithm.use_kl_in_reward"] is False
    assert values["avconfuse"]["reference"]["enable"] is True


def test_the_warmup_sft_machine_composes_with_verls_sft_trainer():
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(
            config_name="sft_trainer_engine", overrides=["+recipe=sft_warmup", "+machine=cpu_ablation_sft"]
        )
    assert config.trainer.device == "cpu" and config.trainer.total_epochs == 48
    assert (config.data.train_batch_size, config.optim.lr) == (8, 5e-3)
    assert config.engine.mixed_precision.param_dtype == "fp32" and config.engine.dtype == "float32"
    assert config.data.custom_cls.name == "OmniSFTDataset"


def test_a_second_driver_on_the_same_folder_stops_before_touching_it(tmp_path, capsys):
    import fcntl

    with (tmp_path / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert ablation_replica.main([str(tmp_path), "--seeds", "0"]) == 1
    assert f"ablation: error: {tmp_path} is in use by another ablation_replica.py" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]
