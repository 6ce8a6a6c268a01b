"""JSONL I/O: errors name file:line, atomic writes leave nothing partial, appends repair torn lines."""

import errno
import json
import os

import pytest

from parrot import ParrotError
from parrot.core.jsonl import AppendWriter, AtomicWriter, read_jsonl, repair_tail, write_text_atomic


def test_read_jsonl_yields_line_numbers_and_skips_blank_lines(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(read_jsonl(p)) == [(1, {"a": 1}), (3, {"a": 2})]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"a": x}', r"a\.jsonl:2: invalid JSON \(Expecting value at column 7\); found '\{\"a\": x\}'"),
        ("[1, 2]", r"a\.jsonl:2: expected a JSON object, found list"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    p = tmp_path / "a.jsonl"
    p.write_text('{"ok": 1}\n' + line + "\n")
    with pytest.raises(ParrotError, match=message):
        list(read_jsonl(p))


def test_skip_counts_bad_lines(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"ok": 1}\nnot json\n[1]\n{"ok": 2}\n')
    counts = {}
    assert [r["ok"] for _, r in read_jsonl(p, on_error="skip", counts=counts)] == [1, 2]
    assert counts == {"invalid_json": 1, "not_an_object": 1}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ParrotError, match="nope.jsonl: file not found"):
        list(read_jsonl(tmp_path / "nope.jsonl"))


def test_atomic_writer_commits_on_success(tmp_path):
    out = tmp_path / "sub" / "out.jsonl"
    with AtomicWriter(out) as w:
        w.write({"a": "é"})
        assert not out.exists()  # nothing under the final name until the end
    assert out.read_text(encoding="utf-8") == '{"a":"é"}\n' and w.count == 1
    assert not (tmp_path / "sub" / "out.jsonl.tmp").exists()


def test_atomic_writer_leaves_no_partial_output_on_error(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"previous": "complete run"}\n')
    with pytest.raises(RuntimeError):
        with AtomicWriter(out) as w:
            w.write({"a": 1})
            raise RuntimeError("boom")
    assert out.read_text() == '{"previous": "complete run"}\n'  # the last good file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_a_whole_text_is_written_the_same_way(tmp_path, monkeypatch):
    out = tmp_path / "report.md"
    assert write_text_atomic(out, "# Report\n") == out and out.read_text() == "# Report\n"

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError) as info:
        write_text_atomic(out, "# Another\n")
    assert info.value.filename == str(out)  # the error names the file
    assert out.read_text() == "# Report\n" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_append_writer_repairs_a_torn_last_line(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"i": 0}\n{"i": 1}\n{"i": 2, "tex')  # a crash mid-write
    with AppendWriter(p, fsync=False) as w:
        assert w.repaired_bytes == len('{"i": 2, "tex')
        w.write({"i": 2})
    assert [r["i"] for _, r in read_jsonl(p)] == [0, 1, 2]


def test_append_writer_keeps_a_clean_file_and_appends(tmp_path):
    p = tmp_path / "a.jsonl"
    with AppendWriter(p) as w:
        w.write({"i": 0})
    with AppendWriter(p) as w:
        assert w.repaired_bytes == 0
        w.write({"i": 1})
    assert p.read_text() == '{"i":0}\n{"i":1}\n'


def test_repair_tail_walks_back_over_long_torn_lines(tmp_path):
    p = tmp_path / "a.jsonl"
    good = json.dumps({"i": 0}) + "\n"
    p.write_text(good + '{"x": "' + "y" * 200_000)
    assert repair_tail(p) == 200_007 and p.read_text() == good
    p.write_text("no newline at all")
    assert repair_tail(p) == 17 and p.read_text() == ""


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"i": 0}\n{"i": 1}')  # a hand-edited file: the editor dropped the final newline
    with AppendWriter(p, fsync=False) as w:
        assert w.repaired_bytes == 0
        w.write({"i": 2})
    assert [r["i"] for _, r in read_jsonl(p)] == [0, 1, 2]
    p.write_text('{"only": 1}')
    assert repair_tail(p) == 0 and p.read_text() == '{"only": 1}\n'


def test_a_byte_order_mark_is_read_past_and_bytes_that_are_not_utf8_name_the_line(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes('\ufeff{"a": 1}\n{"a": 2}\n'.encode())
    assert [r["a"] for _, r in read_jsonl(p)] == [1, 2]
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n{"a": 3}\n')
    with pytest.raises(ParrotError, match=r"latin1\.jsonl:2: not UTF-8 \(byte 0xe9 at column 11\)"):
        list(read_jsonl(p))
    counts = {}
    assert [r["a"] for _, r in read_jsonl(p, on_error="skip", counts=counts)] == [1, 3]
    assert counts == {"invalid_utf8": 1}


def test_write_many_appends_a_group_in_one_write(tmp_path, monkeypatch):
    p = tmp_path / "a.jsonl"
    with AppendWriter(p, fsync=False) as w:
        calls = []
        real_write = w._fh.write
        monkeypatch.setattr(w._fh, "write", lambda text: calls.append(text) or real_write(text))
        w.write_many([{"i": 0}, {"i": 1}, {"i": 2}])
        assert len(calls) == 1 and w.count == 3
    assert [r["i"] for _, r in read_jsonl(p)] == [0, 1, 2]


def test_a_second_writer_on_the_same_file_is_refused_until_the_first_closes(tmp_path):
    p = tmp_path / "a.jsonl"
    with AppendWriter(p, fsync=False) as first:
        first.write({"i": 0})
        with pytest.raises(ParrotError, match=r"a\.jsonl: another process is writing it"):
            AppendWriter(p, fsync=False)
    with AppendWriter(p, fsync=False) as again:
        again.write({"i": 1})
    assert [r["i"] for _, r in read_jsonl(p)] == [0, 1]


def test_a_file_system_without_locks_is_written_unlocked(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with AppendWriter(tmp_path / "a.jsonl", fsync=False) as w:
        w.write({"i": 0})
    assert [r["i"] for _, r in read_jsonl(tmp_path / "a.jsonl")] == [0]
    assert "cannot lock it" in caplog.text


def test_a_failures_file_left_empty_goes_with_its_writer(tmp_path):
    """A run stopped (Ctrl-C) with no failure leaves no empty failures file beside its output."""
    from parrot.core.outputs import failures_path, failures_writer

    out = tmp_path / "out.jsonl"
    with failures_writer(out):
        pass
    assert not failures_path(out).exists()
    with failures_writer(out) as w:
        w.write({"key": 1, "reason": "timeout"})
    with failures_writer(out):  # one there already: kept
        pass
    assert len(failures_path(out).read_text().splitlines()) == 1
