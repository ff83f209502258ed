"""AV-ConfuseBench builders: muted (stems removed, checked by residual energy) and modified (new soundtrack from a
sound bank, checked by loudness), both with the video stream byte-identical, deterministic, staged and atomic.

Stems are tones at distinct frequencies, so what is left of a removed source is measurable to -100 dB."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from verl_avconfuse.bench.modified import build_modified, load_video_manifest, scan_videos
from verl_avconfuse.bench.muted import (
    DEFAULT_MIX_CEILING_DBFS,
    Piece,
    build_muted,
    fit_stem_gains,
    load_muted_manifest,
    load_stems,
    remix_without,
    scan_urmp,
    verify_muted,
)
from verl_avconfuse.bench.schemas import (
    MODIFIED_FIELDS,
    MODIFIED_QUESTION,
    MUTED_FIELDS,
    BenchFormatError,
    load_questions,
    split_annotation,
)
from verl_avconfuse.bench.sound_bank import (
    SoundBank,
    load_bank,
    load_esc50,
    load_urbansound8k,
    loop_to_length,
    prepare_soundtrack,
    rms_dbfs,
)
from verl_avconfuse.media import (
    MediaError,
    load_audio,
    noise,
    probe,
    replace_audio,
    tone,
    video_packets_digest,
    write_synthetic_video,
    write_wav,
)

STEM_SR = 48000
# (folder, [(URMP abbreviation, tone Hz, amplitude)]): a duet, a trio whose sum clips, two violins.
PIECES = [
    ("01_Jupiter_vn_vc", [("vn", 660.0, 0.3), ("vc", 220.0, 0.3)]),
    ("02_Trio_fl_cl_tpt", [("fl", 880.0, 0.5), ("cl", 330.0, 0.5), ("tpt", 550.0, 0.5)]),
    ("03_Duo_vn_vn", [("vn", 440.0, 0.3), ("vn", 770.0, 0.3)]),
]


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _tone_amplitude(signal: np.ndarray, freq: float, sr: int) -> float:
    """Amplitude of the ``freq`` sinusoid in ``signal`` (least squares on sin and cos), steady part only."""
    n = len(signal)
    t = np.arange(n) / sr
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)])
    skip = sr // 10  # the AAC encoder's first frames ramp up
    coef, *_ = np.linalg.lstsq(basis[:, skip:-skip].T, signal[skip:-skip], rcond=None)
    return float(np.hypot(*coef))


@pytest.fixture(scope="module")
def urmp_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("urmp")
    for seed, (folder, sources) in enumerate(PIECES):
        piece_dir = root / folder
        piece_dir.mkdir()
        number, name = folder.split("_")[:2]
        for k, (abbreviation, freq, amplitude) in enumerate(sources, start=1):
            # Stems run 3 s, past the 2 s video: the mux trims them.
            write_wav(
                piece_dir / f"AuSep_{k}_{abbreviation}_{number}_{name}.wav",
                tone(freq, 3.0, STEM_SR, amplitude),
                STEM_SR,
            )
        write_wav(piece_dir / f"AuMix_{folder}.wav", tone(100.0, 3.0, STEM_SR), STEM_SR)
        write_synthetic_video(piece_dir / f"Vid_{folder}.mp4", duration_s=2.0, audio=tone(300.0, 2.0), seed=seed)
    (root / "not_a_piece").mkdir()
    return root


@pytest.fixture(scope="module")
def muted_build(urmp_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("muted_out")
    return out, build_muted(scan_urmp(urmp_root), out, controls=True)


# ------------------------------------------------------------------------------------------- muted


def test_scan_urmp_maps_abbreviations_and_orders_stems(urmp_root):
    pieces = scan_urmp(urmp_root)
    assert [p.key for p in pieces] == ["01_Jupiter_vn_vc", "02_Trio_fl_cl_tpt", "03_Duo_vn_vn"]
    assert pieces[0].instruments == ["violin", "cello"]
    assert pieces[1].instruments == ["flute", "clarinet", "trumpet"]
    assert pieces[1].sources[2][1].name == "AuSep_3_tpt_02_Trio.wav"
    assert pieces[0].video.name == "Vid_01_Jupiter_vn_vc.mp4"


def test_muted_items_follow_the_published_schema(muted_build):
    out, result = muted_build
    items = load_questions(out / "avconfusebench_muted.json", "muted")
    assert items == result.items
    assert all(tuple(item) == MUTED_FIELDS for item in items)
    # Duet: 2 clips x (1 muted + 1 control); trio: 3 clips x (1 + 2); the violin duo is skipped entirely.
    assert len(result.manifest["items"]) == 5 and len(items) == 2 * 2 + 3 * 3
    first = items[0]
    assert first == {
        "video_id": "000001",
        "question": "This is a video of audio corruption where some instrument sound is muted. Please answer:\n"
        " Is there a violin sound? \nYour answer can only be 'yes' or 'no'",
        "answer": "no",
        "instruments": "violin, cello",
        "instruments_len": "two",
    }
    assert items[1]["video_id"] == "000001" and "cello sound" in items[1]["question"] and items[1]["answer"] == "yes"
    assert {i["instruments_len"] for i in items if i["instruments"].startswith("flute")} == {"three"}
    skipped = result.manifest["skipped"]
    assert [(s["piece"], s["reason"]) for s in skipped] == [
        ("03_Duo_vn_vn", "another source has the same instrument")
    ] * 2
    assert sorted(p.name for p in (out / "videos").iterdir()) == [f"{i:06d}.mp4" for i in range(1, 6)]


def test_muted_clips_have_no_residual_of_the_removed_stem_and_keep_the_others(muted_build, urmp_root):
    out, result = muted_build
    for record in result.manifest["items"]:
        piece_dir = urmp_root / record["piece"]
        sources = dict(PIECES)[record["piece"]]
        clip = out / record["file"]
        decoded = load_audio(clip, sr=STEM_SR)
        assert len(decoded) == pytest.approx(2.0 * STEM_SR, abs=32)
        # The mix scale: 1 unless the kept tones' summed peak passes -1 dBFS (the trio: 0.5 + 0.5 > 0.89).
        kept = [(f, a) for abbreviation, f, a in sources if urmp_name(abbreviation) != record["muted_source"]]
        t = np.arange(3 * STEM_SR) / STEM_SR
        peak = np.max(np.abs(sum(a * np.sin(2 * np.pi * f * t) for f, a in kept)))
        ceiling = 10 ** (DEFAULT_MIX_CEILING_DBFS / 20)
        scale = ceiling / peak if peak > ceiling else 1.0
        assert record["mix_scale"] == pytest.approx(scale, rel=1e-4)
        for abbreviation, freq, amplitude in sources:
            measured = _tone_amplitude(decoded, freq, STEM_SR)
            if urmp_name(abbreviation) == record["muted_source"]:
                assert 20 * math.log10(measured / amplitude) < -40  # the removed source is gone
            else:
                assert measured == pytest.approx(amplitude * scale, rel=0.02)  # the others keep their level
        assert record["checks"]["removed_residual_db"] < -40
        assert record["checks"]["kept_gain_error_db"] < 0.2
        assert video_packets_digest(clip) == video_packets_digest(piece_dir / f"Vid_{record['piece']}.mp4")


def urmp_name(abbreviation: str) -> str:
    return {"vn": "violin", "vc": "cello", "fl": "flute", "cl": "clarinet", "tpt": "trumpet"}[abbreviation]


def test_verify_muted_measures_a_leaked_stem(urmp_root, tmp_path):
    piece = scan_urmp(urmp_root)[0]
    stems = load_stems(piece, STEM_SR)
    mix, scale = remix_without(stems, removed=0)
    leaky = mix + 0.1 * stems[0]  # the violin left in at -20 dB
    clip = replace_audio(piece.video, leaky, tmp_path / "leak.mp4", sr=STEM_SR).path
    check = verify_muted(clip, piece.video, stems, removed=0, scale=scale, sr=STEM_SR)
    assert check.removed_residual_db == pytest.approx(-20.0, abs=0.3)
    assert check.failures(-40.0, 1.0) == ["removed stem still at -20.0 dB (threshold -40.0 dB)"]
    other = write_synthetic_video(tmp_path / "other.mp4", duration_s=2.0, seed=7)
    assert not verify_muted(clip, other, stems, 0, scale, STEM_SR).video_identical


def test_fit_stem_gains_separates_correlated_stems():
    t = np.arange(4800) / 48000
    a = np.sin(2 * np.pi * 440 * t)
    b = 0.9 * a + 0.1 * np.sin(2 * np.pi * 660 * t)  # nearly unison with a
    gains = fit_stem_gains((0.5 * b).astype(np.float32), np.stack([a, b]))
    np.testing.assert_allclose(gains, [0.0, 0.5], atol=1e-5)


def test_muted_parquet_rows_match_the_converters_schema(muted_build):
    out, result = muted_build
    frame = pd.read_parquet(out / "avconfusebench_muted.parquet")
    assert len(frame) == len(result.items)
    row = frame.iloc[1].to_dict()
    assert row["data_source"] == "avconfusebench_muted" and row["ability"] == "audio_visual_qa"
    content = row["prompt"][0]["content"]
    assert content.startswith("<video><audio>\n" + result.items[1]["question"])
    assert "<a-think>" in content  # the RL-CoMM format instruction
    video = out / "videos" / "000001.mp4"
    assert list(row["videos"]) == list(row["audios"]) == [str(video.resolve())]
    assert row["reward_model"] == {"style": "rule", "ground_truth": "yes"}
    info = row["extra_info"]
    assert (info["index"], info["video_id"], info["setting"], info["split"]) == (1, "000001", "muted", "test")
    assert (info["asked_source"], info["muted_source"], info["control"]) == ("cello", "violin", True)


def test_muted_rebuild_reuses_clips_and_is_byte_identical(urmp_root, muted_build, tmp_path):
    out, first = muted_build
    before = _digests(out)
    again = build_muted(scan_urmp(urmp_root), out, controls=True)
    assert (again.built, again.reused) == (0, 5)
    assert _digests(out) == before
    # A fresh folder re-encodes every clip: AAC encoding and the stream copy give the same bytes.
    fresh = build_muted(scan_urmp(urmp_root), tmp_path / "fresh", controls=True)
    assert (fresh.built, fresh.reused) == (5, 0)
    fresh_digests = _digests(tmp_path / "fresh")
    assert {k: v for k, v in fresh_digests.items() if k.endswith((".mp4", "muted.json"))} == {
        k: v for k, v in before.items() if k.endswith((".mp4", "muted.json"))
    }


def test_muted_build_in_another_process_gives_the_same_bytes(urmp_root, muted_build, tmp_path):
    from conftest import run_python

    out, _ = muted_build
    code = (
        "import sys; from verl_avconfuse.bench.muted import build_muted, scan_urmp; "
        "build_muted(scan_urmp(sys.argv[1]), sys.argv[2], controls=True)"
    )
    done = run_python(["-c", code, str(urmp_root), str(tmp_path / "sub")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    theirs, ours = _digests(tmp_path / "sub"), _digests(out)
    assert {k: v for k, v in theirs.items() if k.endswith(".mp4")} == {
        k: v for k, v in ours.items() if k.endswith(".mp4")
    }
    assert theirs["avconfusebench_muted.json"] == ours["avconfusebench_muted.json"]


def test_silent_stem_is_not_muted(urmp_root, tmp_path):
    piece = scan_urmp(urmp_root)[0]
    write_wav(tmp_path / "silent.wav", np.zeros(3 * STEM_SR, np.float32), STEM_SR)
    trio = Piece("04_Quiet", piece.video, (*piece.sources, ("flute", tmp_path / "silent.wav")))
    result = build_muted([trio], tmp_path / "out")
    assert [r["muted_source"] for r in result.manifest["items"]] == ["violin", "cello"]
    assert result.manifest["skipped"] == [
        {"piece": "04_Quiet", "source": "flute", "reason": "stem is silent during the video"}
    ]
    assert {i["instruments_len"] for i in result.items} == {"three"}


def test_muted_build_interrupted_leaves_no_partial_files(urmp_root, tmp_path):
    out = tmp_path / "out"

    def stop_after_first(done, total, label):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_muted(scan_urmp(urmp_root), out, progress=stop_after_first)
    assert not out.exists()  # not even the clip that was finished, nor the staging folder, nor out/ it made
    (out / "mine").mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        build_muted(scan_urmp(urmp_root), out, progress=stop_after_first)
    assert [p.name for p in out.iterdir()] == ["mine"]  # a folder that was there stays, with what it held

    build_muted(scan_urmp(urmp_root), out)
    complete = _digests(out)
    with pytest.raises(KeyboardInterrupt):
        build_muted(scan_urmp(urmp_root), out, controls=True, sample_rate=32000, progress=stop_after_first)
    assert _digests(out) == complete  # the previous build is untouched


def test_unreadable_stem_fails_the_build_naming_the_file(urmp_root, tmp_path):
    pieces = scan_urmp(urmp_root)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not a wav at all")
    broken = Piece("00_Broken", pieces[0].video, (("violin", pieces[0].sources[0][1]), ("cello", bad)))
    with pytest.raises(MediaError, match="broken.wav"):
        build_muted([pieces[1], broken], tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()  # the folders the build created are gone again


def test_muted_manifest_json_and_csv_give_the_same_pieces(urmp_root, tmp_path):
    piece = scan_urmp(urmp_root)[0]
    entries = [{"id": "jupiter", "video": str(piece.video), "sources": {n: str(p) for n, p in piece.sources}}]
    (tmp_path / "m.json").write_text(json.dumps(entries))
    with (tmp_path / "m.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "video", "source", "stem"])
        writer.writerows(["jupiter", str(piece.video), n, str(p)] for n, p in piece.sources)
    from_json, from_csv = load_muted_manifest(tmp_path / "m.json"), load_muted_manifest(tmp_path / "m.csv")
    assert from_json == from_csv == [Piece("jupiter", piece.video, piece.sources)]

    (tmp_path / "bad.csv").write_text("video,stem\nx.mp4,y.wav\n")
    with pytest.raises(BenchFormatError, match=r"bad.csv: missing column\(s\) \['source'\]"):
        load_muted_manifest(tmp_path / "bad.csv")
    entries[0]["sources"]["violin"] = "missing.wav"
    (tmp_path / "missing.json").write_text(json.dumps(entries))
    with pytest.raises(BenchFormatError, match=r"entry 0 \(source 'violin'\): .*missing.wav does not exist"):
        load_muted_manifest(tmp_path / "missing.json")


def test_mute_count_is_seeded_per_piece(urmp_root, tmp_path):
    pieces = scan_urmp(urmp_root)
    picks = {}
    for seed in range(6):
        result = build_muted(pieces[:2], tmp_path / f"s{seed}", mute=1, seed=seed)
        picks[seed] = [r["muted_source"] for r in result.manifest["items"]]
        assert len(picks[seed]) == 2
    again = build_muted(pieces[:2], tmp_path / "again", mute=1, seed=3)
    assert [r["muted_source"] for r in again.manifest["items"]] == picks[3]
    assert len({tuple(p) for p in picks.values()}) > 1


# ----------------------------------------------------------------------------------------- banks


def _write_clip(path: Path, samples: np.ndarray, sr: int = 44100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, samples, sr)


@pytest.fixture(scope="module")
def esc50_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("esc50")
    rows = [
        ("1-100-A-0.wav", 1, 0, "dog", "True", "100", "A"),
        ("1-200-A-14.wav", 1, 14, "chirping_birds", "False", "200", "A"),
        ("2-300-A-10.wav", 2, 10, "rain", "True", "300", "A"),
        ("2-301-B-10.wav", 2, 10, "rain", "True", "301", "B"),
        ("3-400-A-19.wav", 3, 19, "thunderstorm", "False", "400", "A"),
        ("4-500-A-16.wav", 4, 16, "wind", "False", "500", "A"),
    ]
    (root / "meta").mkdir()
    with (root / "meta" / "esc50.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    for i, row in enumerate(rows):
        _write_clip(root / "audio" / row[0], noise(1.0, 44100, 0.05, seed=i))
    return root


@pytest.fixture(scope="module")
def urbansound_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("us8k")
    rows = [
        ("100-4-0-0.wav", 100, 0.0, 4.0, 1, 3, 4, "drilling"),
        ("101-4-0-0.wav", 101, 0.0, 4.0, 2, 5, 4, "drilling"),
        ("102-3-0-0.wav", 102, 0.0, 4.0, 1, 5, 3, "dog_bark"),
    ]
    (root / "metadata").mkdir()
    with (root / "metadata" / "UrbanSound8K.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        writer.writerows(rows)
    for i, row in enumerate(rows):
        _write_clip(root / "audio" / f"fold{row[5]}" / row[0], tone(300.0 + 100 * i, 1.0, 22050), 22050)
    return root


def test_esc50_and_urbansound8k_map_to_the_paper_sound_types(esc50_root, urbansound_root):
    esc = load_esc50(esc50_root)
    assert esc.types() == ["bird", "dog", "rain", "thunderstorm", "wind"]
    assert [c.path.name for c in esc.clips("rain")] == ["2-300-A-10.wav", "2-301-B-10.wav"]
    assert esc.clips("bird")[0].category == "chirping_birds"
    us8k = load_urbansound8k(urbansound_root)
    assert [c.path.name for c in us8k.clips("drill")] == ["100-4-0-0.wav"]  # foreground (salience 1) only
    assert [c.path.parent.name for c in us8k.clips("drill")] == ["fold3"]
    merged = SoundBank.merge([load_bank(f"esc50:{esc50_root}"), load_bank(urbansound_root)])
    assert {"bird", "drill", "rain", "thunderstorm", "wind"} <= set(merged.types())
    with pytest.raises(BenchFormatError, match="no clips of sound type 'lion'.*it has bird, dog"):
        merged.clips("lion")


def test_bank_layout_errors_name_the_file(tmp_path, esc50_root):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("filename,fold,category\n")
    with pytest.raises(BenchFormatError, match=r"esc50.csv: missing column\(s\) \['target', 'esc10'"):
        load_esc50(tmp_path)
    broken = tmp_path / "broken"
    (broken / "meta").mkdir(parents=True)
    (broken / "meta" / "esc50.csv").write_text((esc50_root / "meta" / "esc50.csv").read_text())
    with pytest.raises(BenchFormatError, match=r"row 2 names .*1-100-A-0.wav, which does not exist"):
        load_esc50(broken)


def test_bank_choice_is_seeded_per_video_and_type(esc50_root):
    bank = load_esc50(esc50_root)
    assert bank.choose("rain", "video_a", 0) == bank.choose("rain", "video_a", 0)
    picks = {bank.choose("rain", f"video_{i}", 0).path.name for i in range(20)}
    assert picks == {"2-300-A-10.wav", "2-301-B-10.wav"}


def test_loop_to_length_repeats_with_crossfades():
    clip = np.linspace(0.1, 1.0, 100, dtype=np.float32)
    out = loop_to_length(clip, 250, crossfade=10)
    assert out.shape == (250,)
    step = 90
    np.testing.assert_allclose(out[:90], clip[:90])  # first copy, before its fade-out
    np.testing.assert_allclose(out[step + 10 : step + 90], clip[10:90])  # second copy, between the seams
    seam = out[90:100]  # fade-out of copy 1 + fade-in of copy 2: sin^2 + cos^2 = 1 keeps power for noise
    fade = np.sin(0.5 * np.pi * (np.arange(10) + 0.5) / 10)
    np.testing.assert_allclose(seam, clip[90:100] * fade[::-1] + clip[:10] * fade, rtol=1e-6)
    np.testing.assert_allclose(loop_to_length(clip, 60, crossfade=10), clip[:60])


def test_prepare_soundtrack_hits_the_rms_target_or_the_peak_ceiling(tmp_path):
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, np.concatenate([np.zeros(2000, np.float32), noise(0.5, 16000, 0.01, seed=1)]), 16000)
    track, stats = prepare_soundtrack(quiet, 48000, 16000, target_rms_dbfs=-20.0)
    assert track.shape == (48000,)
    assert rms_dbfs(track) == pytest.approx(-20.0, abs=0.01) and not stats.peak_limited
    assert stats.clip_seconds == pytest.approx(0.5, abs=0.01)  # the leading silence was trimmed
    spiky = np.zeros(16000, np.float32)
    spiky[::4000] = 0.5  # four clicks: reaching -20 dBFS RMS would need a peak far above full scale
    write_wav(tmp_path / "spiky.wav", spiky, 16000)
    track, stats = prepare_soundtrack(tmp_path / "spiky.wav", 16000, 16000)
    assert stats.peak_limited and stats.peak_dbfs == pytest.approx(-1.0, abs=0.01)
    assert np.max(np.abs(track)) == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    write_wav(tmp_path / "silent.wav", np.zeros(1000, np.float32), 16000)
    with pytest.raises(BenchFormatError, match="silent.wav: the sound clip is silent"):
        prepare_soundtrack(tmp_path / "silent.wav", 1000, 16000)


# -------------------------------------------------------------------------------------- modified


@pytest.fixture(scope="module")
def rain_bank(tmp_path_factory) -> SoundBank:
    root = tmp_path_factory.mktemp("folder_bank")
    for k in range(2):
        _write_clip(root / "rain" / f"rain_{k}.wav", noise(1.5, 44100, 0.03 * (k + 1), seed=10 + k))
    _write_clip(root / "chirping_birds" / "birds.wav", tone(3000.0, 0.7, 44100, 0.2))
    return load_bank(f"folder:{root}")


def test_modified_build_on_the_real_clip(drill_clip, rain_bank, tmp_path):
    drill = drill_clip
    speech = write_synthetic_video(tmp_path / "speech.mp4", duration_s=2.0, audio=noise(2.0), seed=3)
    manifest = tmp_path / "videos.json"
    visual = "two musicians play a saxophone and an electric guitar in front of a painted face"
    manifest.write_text(json.dumps([{"video": str(drill), "id": "00000810", "visual": visual}, {"video": str(speech)}]))
    videos = load_video_manifest(manifest)
    out = tmp_path / "modified"
    result = build_modified(videos, rain_bank, out, sound_types=["bird", "rain"])

    items = load_questions(out / "avconfusebench_modified.json", "modified")
    assert all(tuple(item) == MODIFIED_FIELDS for item in items)
    assert [i["filename"] for i in items] == [
        "combined_000001_bird.mp4",
        "combined_000002_rain.mp4",
        "combined_000003_bird.mp4",
        "combined_000004_rain.mp4",
    ]
    assert items[1]["question"] == MODIFIED_QUESTION and items[1]["sound_type"] == "rain"
    assert (
        items[1]["annotation"] == f"Based on the video, {visual}. Based on the audio, there is a sound of rain falling."
    )
    assert split_annotation(items[3]["annotation"]) == (
        "[describe what the video shows].",
        "there is a sound of rain falling.",
    )
    assert result.manifest["items_missing_visual"] == 2

    clip = out / "videos" / "combined_000002_rain.mp4"
    assert video_packets_digest(clip) == video_packets_digest(drill)
    info = probe(clip)
    assert (info.audio_sample_rate, info.audio_channels, info.video_frames) == (44100, 2, 3602)
    decoded = load_audio(clip, sr=44100)
    assert len(decoded) == pytest.approx(60.0333 * 44100, abs=64)
    # Loudness: -20 dBFS RMS prepared; AAC's low-pass takes ~1.5 dB of full-band noise at 44.1 kHz, none at 16 kHz.
    record = result.manifest["items"][1]
    assert record["soundtrack"]["rms_dbfs"] == pytest.approx(-20.0, abs=0.01)
    assert rms_dbfs(load_audio(clip, sr=16000)) == pytest.approx(record["checks"]["rms_dbfs_16k"], abs=0.5)
    assert -21.8 < rms_dbfs(decoded) < -19.5
    assert record["bank_clip"].endswith(("rain_0.wav", "rain_1.wav")) and record["checks"]["video_identical"]
    bird = load_audio(out / "videos" / "combined_000001_bird.mp4", sr=44100)
    spectrum = np.abs(np.fft.rfft(bird[: 44100 * 5]))
    assert np.argmax(spectrum) / 5.0 == pytest.approx(3000.0, abs=1.0)  # the bird clip, looped, is the soundtrack
    assert rms_dbfs(bird) == pytest.approx(-20.0, abs=0.3)

    rows = pd.read_parquet(out / "avconfusebench_modified.parquet")
    row = rows.iloc[1].to_dict()
    assert row["data_source"] == "avconfusebench_modified"
    assert row["reward_model"] == {"style": "model", "ground_truth": items[1]["annotation"]}
    assert row["extra_info"]["sound_type"] == "rain" and row["extra_info"]["filename"] == items[1]["filename"]

    before = _digests(out)
    again = build_modified(load_video_manifest(manifest), rain_bank, out, sound_types=["bird", "rain"])
    assert (again.built, again.reused) == (0, 4) and _digests(out) == before


def test_modified_build_is_deterministic_and_atomic(rain_bank, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for seed in range(3):
        write_synthetic_video(folder / f"clip_{seed}.mp4", duration_s=1.5, audio=tone(500.0, 1.5), seed=seed)
    videos = scan_videos(folder)
    first = build_modified(videos, rain_bank, tmp_path / "a", sound_types=["bird", "rain"], per_video=1, seed=5)
    build_modified(videos, rain_bank, tmp_path / "b", sound_types=["bird", "rain"], per_video=1, seed=5)
    assert len(first.items) == 3
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert {k: v for k, v in a.items() if k.endswith(".mp4")} == {k: v for k, v in b.items() if k.endswith(".mp4")}
    assert a["avconfusebench_modified.json"] == b["avconfusebench_modified.json"]

    def fail_on_second(done, total, label):
        if done == 2:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        build_modified(videos, rain_bank, tmp_path / "c", sound_types=["rain"], progress=fail_on_second)
    assert not (tmp_path / "c").exists()  # the folder the failed build created is removed
    with pytest.raises(BenchFormatError, match="no clips of sound type 'drill'"):
        build_modified(videos, rain_bank, tmp_path / "d", sound_types=["drill"])


# ------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def avconfuse(monkeypatch):
    from verl_avconfuse import cli

    monkeypatch.setitem(
        cli.COMMANDS,
        "bench",
        (("verl_avconfuse.bench.cli", "verl_avconfuse.evaluation.cli"), "AV-ConfuseBench: build sets, evaluate"),
    )
    return cli.main


def test_cli_builds_both_settings(avconfuse, urmp_root, esc50_root, urbansound_root, tmp_path, capsys):
    assert (
        avconfuse(["bench", "build", "muted", "--urmp", str(urmp_root), "--out", str(tmp_path / "m"), "--mute", "1"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert (summary["clips"], summary["built"], summary["items"]) == (2, 2, 2)
    assert summary["worst_removed_residual_db"] < -40
    assert len(load_questions(tmp_path / "m" / "avconfusebench_muted.json")) == 2

    folder = tmp_path / "videos"
    folder.mkdir()
    write_synthetic_video(folder / "a.mp4", duration_s=1.0, seed=1)
    args = ["bench", "build", "modified", "--videos", str(folder), "--out", str(tmp_path / "x")]
    args += ["--bank", f"esc50:{esc50_root}", "--bank", f"urbansound8k:{urbansound_root}"]
    assert avconfuse(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["clips"], summary["items_missing_visual"]) == (5, 5)
    items = load_questions(tmp_path / "x" / "avconfusebench_modified.json", "modified")
    assert [i["sound_type"] for i in items] == ["bird", "drill", "rain", "thunderstorm", "wind"]


def test_cli_reports_bad_input_with_exit_status_2(avconfuse, tmp_path, capsys):
    missing = tmp_path / "no_such_urmp"
    assert avconfuse(["bench", "build", "muted", "--urmp", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert f"{missing}: URMP folder not found" in capsys.readouterr().err
    args = ["bench", "build", "modified", "--videos", str(tmp_path), "--bank", str(tmp_path), "--out", str(tmp_path)]
    assert avconfuse(args) == 2
    assert f"{tmp_path}: no video files (.mp4" in capsys.readouterr().err
    write_synthetic_video(tmp_path / "v.mp4", duration_s=1.0)
    (tmp_path / "empty_bank").mkdir()
    args[6] = str(tmp_path / "empty_bank")
    assert avconfuse(args) == 2
    assert "empty_bank: no audio files in class folders" in capsys.readouterr().err
