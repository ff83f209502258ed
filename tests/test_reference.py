"""The reference audio LM: content-keyed cache, service (misses only, isolated failures), precompute."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from verl_avconfuse.errors import RunFailed
from verl_avconfuse.reference.backends import HFAudioLM
from verl_avconfuse.reference.cache import ReferenceCache, ReferenceRequest, reference_key
from verl_avconfuse.reference.cli import precompute
from verl_avconfuse.reference.service import ReferenceService

from conftest import SILENT_VIDEO


@pytest.fixture(scope="module")
def audio_lm(tiny_asset):
    return HFAudioLM(tiny_asset("models/qwen2_audio"))


@pytest.fixture(scope="module")
def clips(tiny_asset):
    frame = pd.read_parquet(tiny_asset("data/omni/train.parquet"))
    return [str(v[0]) for v in frame["videos"][:4]]


class CountingLM:
    """The real tiny audio LM, counting what it is asked to generate."""

    def __init__(self, inner):
        self.inner, self.model_id, self.generated = inner, inner.model_id, []
        self.generation_settings = inner.generation_settings

    def generate(self, requests):
        self.generated.extend(requests)
        return self.inner.generate(requests)


def test_cache_key_follows_content_not_paths(clips, tmp_path):
    copy = tmp_path / "same_clip_elsewhere.mp4"
    shutil.copy(clips[0], copy)
    base = ReferenceRequest(clips[0], "Is there a violin sound?", "yes")
    assert reference_key(base, "m") == reference_key(ReferenceRequest(str(copy), base.question, base.answer), "m")
    assert reference_key(base, "m") != reference_key(ReferenceRequest(clips[1], base.question, base.answer), "m")
    assert reference_key(base, "m") != reference_key(ReferenceRequest(clips[0], base.question, "no"), "m")
    assert reference_key(base, "m") != reference_key(base, "other-model")
    assert reference_key(base, "m") != reference_key(base, "m", prompt_version="v2")


def test_cache_key_covers_every_generation_setting(clips):
    base = ReferenceRequest(clips[0], "Is there a violin sound?", "yes")
    release = {"backend": "hf", "temperature": 0.5, "top_p": 0.95, "max_new_tokens": 128, "seed": 0}
    key = reference_key(base, "m", release)
    assert key == reference_key(base, "m", dict(reversed(list(release.items()))))  # order is not content
    for name, other in (
        ("temperature", 0.7),
        ("top_p", 1.0),
        ("max_new_tokens", 256),
        ("seed", 1),
        ("backend", "vllm"),
    ):
        assert reference_key(base, "m", {**release, name: other}) != key, name


def test_a_changed_temperature_misses_the_cache(audio_lm, clips, tmp_path):
    """Same clip, question, answer and model; only the temperature differs: a new generation, not the old entry."""
    requests = [ReferenceRequest(clips[0], "Is there a violin sound?", "yes")]
    first = CountingLM(audio_lm)
    ReferenceService(first, ReferenceCache(tmp_path)).get_many(requests)
    hotter = CountingLM(audio_lm)
    hotter.generation_settings = {**audio_lm.generation_settings, "temperature": 0.9}
    result = ReferenceService(hotter, ReferenceCache(tmp_path)).get_many(requests)
    assert len(first.generated) == 1 and len(hotter.generated) == 1 and not result[0].cached
    again = CountingLM(audio_lm)  # the release's settings again: the first entry serves
    assert ReferenceService(again, ReferenceCache(tmp_path)).get_many(requests)[0].cached and not again.generated


def test_service_generates_each_prompt_once_then_serves_the_cache(audio_lm, clips, tmp_path):
    lm = CountingLM(audio_lm)
    service = ReferenceService(lm, ReferenceCache(tmp_path), batch_size=2)
    requests = [ReferenceRequest(c, "Is there a violin sound?", "yes") for c in clips] * 2  # a group repeats
    first = service.get_many(requests)
    assert all(r.a_think for r in first) and len(lm.generated) == len(clips)
    assert [r.a_think for r in first[: len(clips)]] == [r.a_think for r in first[len(clips) :]]
    second = ReferenceService(lm, ReferenceCache(tmp_path), batch_size=2).get_many(requests)  # a new run
    assert len(lm.generated) == len(clips)
    assert all(r.cached for r in second) and [r.a_think for r in second] == [r.a_think for r in first]


def test_one_bad_file_costs_one_sample_and_is_not_retried(audio_lm, clips, tmp_path):
    lm = CountingLM(audio_lm)
    service = ReferenceService(lm, ReferenceCache(tmp_path), batch_size=4)
    silent = str(SILENT_VIDEO)
    requests = [
        ReferenceRequest(clips[0], "q", "yes"),
        ReferenceRequest(silent, "q", "no"),
        ReferenceRequest(str(tmp_path / "missing.mp4"), "q", "no"),
    ]
    results = service.get_many(requests)
    assert results[0].a_think and results[0].error is None
    assert results[1].a_think is None and "video_only_no_audio.mp4" in results[1].error and "audio" in results[1].error
    assert results[2].a_think is None and "missing.mp4" in results[2].error
    asked = len(lm.generated)
    service.get_many(requests[1:2])
    assert len(lm.generated) == asked, "a known-bad file is not generated again in the same run"
    assert service.stats.errors == 3 and len(ReferenceCache(tmp_path)) == 1


def test_an_empty_generation_is_a_failed_reference_not_an_empty_one(audio_lm, clips, tmp_path):
    """The service extracts with the reward's own rule (rewards.parsing.reference_a_think)."""

    class Blank:
        model_id, generation_settings = audio_lm.model_id, audio_lm.generation_settings

        def generate(self, requests):
            return ["   ", "<a-think> I hear a violin. </a-think> tail", "I hear a cello, cut off <a-think>"]

    requests = [ReferenceRequest(c, "Is there a violin sound?", "yes") for c in clips[:3]]
    results = ReferenceService(Blank(), ReferenceCache(tmp_path), batch_size=3).get_many(requests)
    assert results[0].a_think is None and results[0].error.endswith("the reference audio LM wrote nothing")
    assert [r.a_think for r in results[1:]] == ["I hear a violin.", "I hear a cello, cut off"]
    assert len(ReferenceCache(tmp_path)) == 2  # the failure is not cached


def test_read_only_cache_refuses_writes_and_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        ReferenceCache(tmp_path / "nothing", readonly=True).get_many(["k"])
    ReferenceCache(tmp_path).put_many([("k", "a", "raw")], model="m")
    readonly = ReferenceCache(tmp_path, readonly=True)
    assert readonly.get_many(["k", "other"]) == {"k": "a"}
    with pytest.raises(PermissionError):
        readonly.put_many([("x", "a", "raw")], model="m")


def test_precompute_writes_extra_info_atomically_and_resumes_from_the_cache(audio_lm, tiny_asset, tmp_path):
    frame = pd.read_parquet(tiny_asset("data/omni/train.parquet")).head(5)
    silent = str(SILENT_VIDEO)
    frame.at[3, "videos"] = [silent]
    frame.at[3, "audios"] = [silent]
    data = tmp_path / "train.parquet"
    frame.to_parquet(data)
    lm = CountingLM(audio_lm)
    out = tmp_path / "out" / "train.ref.parquet"
    # A row without usable audio fails the run: nothing is written (a previous output would stay as it was).
    with pytest.raises(RunFailed, match=r"1 of 5 rows got no reference a-think, so .* was not written.*row 3: "):
        precompute(data, out, ReferenceService(lm, ReferenceCache(tmp_path / "cache")), batch_size=2)
    assert not out.parent.exists()
    generated_before = len(lm.generated)
    summary = precompute(
        data, out, ReferenceService(lm, ReferenceCache(tmp_path / "cache")), batch_size=2, skip_bad=True
    )
    assert len(lm.generated) == generated_before + 1  # the four good rows came from the cache
    written = pd.read_parquet(out)
    refs = [info["reference_a_think"] for info in written["extra_info"]]
    assert [r is None for r in refs] == [False, False, False, True, False]
    assert summary["failures"][0]["row"] == 3 and "video_only_no_audio.mp4" in summary["failures"][0]["reason"]
    assert written["extra_info"][0]["question"] == frame["extra_info"][0]["question"]  # other fields kept
    generated = len(lm.generated)
    precompute(data, out, ReferenceService(lm, ReferenceCache(tmp_path / "cache")), batch_size=2, skip_bad=True)
    assert len(lm.generated) == generated + 1  # only the failed row is tried again
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.ref.parquet"]
