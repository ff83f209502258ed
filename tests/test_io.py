"""verl_avconfuse.io: atomic writes (old file or new file, never half, no temp left) and JSONL reading."""

from __future__ import annotations

import json
import os
import stat

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_avconfuse.io import (
    JsonlLine,
    append_jsonl,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    iter_jsonl,
)


def test_success_replaces_the_old_content_and_leaves_only_the_file(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("old")
    with atomic_path(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".report.json.") and tmp.name.endswith(".tmp")
        assert tmp.exists() and tmp.read_bytes() == b""  # created empty, so no other writer can take the name
        assert out.read_text() == "old"  # the destination is untouched until the block ends
        tmp.write_text("new")
    assert out.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize("interrupt", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failure_mid_write_keeps_the_old_file_and_removes_the_temp(tmp_path, interrupt):
    out = tmp_path / "train.parquet"
    out.write_bytes(b"previous run")
    with pytest.raises(type(interrupt)), atomic_path(out) as tmp:
        tmp.write_bytes(b"PAR1 half a file")
        raise interrupt
    assert out.read_bytes() == b"previous run"
    assert [p.name for p in tmp_path.iterdir()] == ["train.parquet"]


def test_a_failure_with_no_previous_file_leaves_the_folder_empty(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "x.wav", suffix=".wav") as tmp:
        tmp.write_bytes(b"RIFF")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_the_block_may_replace_or_delete_the_temp_file(tmp_path):
    # Writers such as FFmpeg re-create the file at the temp path; a block that fails after deleting it
    # must still raise its own error, not a FileNotFoundError from the clean-up.
    out = tmp_path / "clip.mp4"
    with pytest.raises(ValueError, match="encoder failed"), atomic_path(out, suffix=".mp4") as tmp:
        tmp.unlink()
        raise ValueError("encoder failed")
    assert list(tmp_path.iterdir()) == []


def test_suffix_keeps_the_extension_writers_pick_the_format_from(tmp_path):
    with atomic_path(tmp_path / "clip.mp4", suffix=".mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.name.startswith(".clip.mp4.") and tmp.name.endswith(".tmp.mp4")
        tmp.write_bytes(b"x")
    assert (tmp_path / "clip.mp4").read_bytes() == b"x"


def test_a_missing_folder_raises_naming_it_unless_parents_is_asked(tmp_path):
    out = tmp_path / "a" / "b" / "out.json"
    with pytest.raises(FileNotFoundError, match=r"out\.json: the folder .*a/b does not exist"):
        atomic_write_text(out, "x")
    assert list(tmp_path.iterdir()) == []  # no folder created on the way
    assert atomic_write_text(out, "x", parents=True) == out
    assert out.read_text() == "x"


def test_the_file_mode_follows_the_umask_like_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "data.bin", b"\x00\x01")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data.bin").stat().st_mode) == 0o644  # 0o666 & ~0o022, not mkstemp's 0o600


def test_text_is_written_as_given_in_the_encoding(tmp_path):
    atomic_write_text(tmp_path / "t.md", "| – |\r\nend\n")
    assert (tmp_path / "t.md").read_bytes() == "| – |\r\nend\n".encode()
    atomic_write_text(tmp_path / "l.txt", "é", encoding="latin-1")
    assert (tmp_path / "l.txt").read_bytes() == b"\xe9"


def test_json_kwargs_reach_json_dumps_and_a_newline_ends_the_file(tmp_path):
    obj = {"task": "music_avqa", "note": "naïve – café", "values": [1, 2.5, None]}
    plain = atomic_write_json(tmp_path / "a.json", obj)
    assert plain.read_text(encoding="utf-8") == json.dumps(obj) + "\n"
    assert "\\u00ef" in plain.read_text(encoding="utf-8")  # json.dumps' default: ASCII escapes
    pretty = atomic_write_json(tmp_path / "b.json", obj, indent=2, ensure_ascii=False)
    assert pretty.read_text(encoding="utf-8") == json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    assert json.loads(pretty.read_text(encoding="utf-8")) == obj


@settings(max_examples=50, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=12,
    )
)
def test_json_round_trip(tmp_path_factory, obj):
    path = tmp_path_factory.mktemp("json") / "obj.json"
    atomic_write_json(path, obj, ensure_ascii=False)
    assert json.loads(path.read_text(encoding="utf-8")) == obj


def test_parquet_from_rows_or_a_frame(tmp_path):
    rows = [{"data_source": "avqa", "extra_info": {"index": 0}}, {"data_source": "avqa", "extra_info": {"index": 1}}]
    out = atomic_write_parquet(tmp_path / "sub" / "train.parquet", rows, parents=True, index=False)
    assert pd.read_parquet(out).to_dict("records") == rows
    frame = pd.read_parquet(out).assign(extra_info=[{"index": 5}, {"index": 6}])
    atomic_write_parquet(out, frame)
    assert [r["index"] for r in pd.read_parquet(out)["extra_info"]] == [5, 6]
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.parquet"]


def test_a_parquet_write_that_fails_keeps_the_old_file(tmp_path):
    out = tmp_path / "train.parquet"
    atomic_write_parquet(out, [{"a": 1}])
    before = out.read_bytes()
    with pytest.raises(ValueError, match="Could not convert"):  # pyarrow's ArrowInvalid: an object column
        atomic_write_parquet(out, [{"a": object()}])
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["train.parquet"]


# ---------------------------------------------------------------------------------------------- JSONL


def test_iter_jsonl_numbers_lines_from_one_and_skips_blank_ones(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1}\n\n   \n[1, 2]\n"text"\r\n{"id": 2}', encoding="utf-8")
    assert list(iter_jsonl(path)) == [
        JsonlLine(1, {"id": 1}, None),
        JsonlLine(4, [1, 2], None),
        JsonlLine(5, "text", None),  # a CRLF ending is fine
        JsonlLine(6, {"id": 2}, None),  # no final newline
    ]


def test_iter_jsonl_yields_a_bad_line_with_its_error_and_goes_on(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1}\n{"id": 2,\n{"id": 3}\n', encoding="utf-8")
    lines = list(iter_jsonl(path))
    assert [(line.number, line.record) for line in lines] == [(1, {"id": 1}), (2, None), (3, {"id": 3})]
    assert lines[1].error is not None and lines[1].error.msg == "Expecting property name enclosed in double quotes"
    assert lines[0].error is None and lines[2].error is None


def test_iter_jsonl_splits_only_at_newlines_not_at_unicode_line_separators(tmp_path):
    # json.dumps(ensure_ascii=False) leaves U+2028 and U+0085 raw inside strings; str.splitlines would cut
    # the record there.
    records = [{"prediction": "a\u2028b\x85c"}, {"prediction": "plain"}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert [line.record for line in iter_jsonl(path)] == records
    assert [line.number for line in iter_jsonl(path)] == [1, 2]


def test_iter_jsonl_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(iter_jsonl(tmp_path / "none.jsonl"))


def test_append_jsonl_after_a_torn_last_line_keeps_the_new_records(tmp_path):
    path = tmp_path / "cache.jsonl"
    assert append_jsonl(path, [{"id": 1}, {"id": "\u2028"}]) == 2
    with path.open("ab") as f:
        f.write(b'{"id": 3, "predic')  # a kill mid-append: no newline
    assert append_jsonl(path, [{"id": 4}]) == 1
    assert append_jsonl(path, []) == 0
    lines = list(iter_jsonl(path))
    assert [line.record for line in lines] == [{"id": 1}, {"id": "\u2028"}, None, {"id": 4}]
    assert lines[2].number == 3 and lines[2].error is not None
    assert path.read_bytes().endswith(b'{"id": 4}\n')


def test_append_jsonl_creates_the_folder_and_starts_an_empty_file_without_a_blank_line(tmp_path):
    path = tmp_path / "new" / "cache.jsonl"
    append_jsonl(path, [{"a": 1}], fsync=False)
    path.write_bytes(b"")
    append_jsonl(path, [{"b": 2}])
    assert path.read_bytes() == b'{"b": 2}\n'
