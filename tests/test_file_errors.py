"""File-system errors at the command line: one line naming the file and the cause, exit 2, and
no temporary file left behind (a file where a directory should be, a directory that cannot be
written to, a full disk)."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest

from parrot.cli import main
from parrot.core.jsonl import AppendWriter, AtomicWriter


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "in" / "sg.json"
    src.parent.mkdir()
    src.write_text(
        json.dumps(
            [
                {
                    "id": f"s{i}",
                    "conversations": [
                        {"from": "human", "value": f"question {i}"},
                        {"from": "gpt", "value": "an answer"},
                    ],
                }
                for i in range(20)
            ]
        )
    )
    return src


def error_line(capsys) -> str:
    """The error the CLI printed on stderr: one line, no traceback (log lines may come before)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("parrot ")]
    assert len(lines) == 1 and err.rstrip("\n").endswith(lines[0]), err
    return lines[0]


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp"))


def test_an_output_under_a_file_is_one_line_naming_it(tmp_path, source, capsys):
    (tmp_path / "data").write_text("a file, not a directory\n")
    assert main(["prepare", str(source), "-o", str(tmp_path / "data" / "sg.jsonl")]) == 2
    assert error_line(capsys) == f"parrot prepare: error: {tmp_path / 'data'}: exists and is not a directory"
    assert main(["prepare", str(source), "-o", str(tmp_path / "data" / "sub" / "sg.jsonl")]) == 2
    assert error_line(capsys) == f"parrot prepare: error: {tmp_path / 'data' / 'sub'}: Not a directory"


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write to: a chmod 555 one, or (as root, whom modes do not
    stop) /sys, which refuses new files to everyone."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    d = Path("/sys")
    try:
        (d / "parrot-probe").open("w").close()
    except OSError:
        yield d
    else:  # pragma: no cover - a writable /sys
        (d / "parrot-probe").unlink()
        pytest.skip("no directory here refuses writes to root")


def test_a_directory_that_cannot_be_written_is_one_line_naming_the_file(read_only_dir, source, capsys):
    out = read_only_dir / "parrot-test-sg.jsonl"
    assert main(["prepare", str(source), "-o", str(out)]) == 2
    assert error_line(capsys) == f"parrot prepare: error: {out}.tmp: Permission denied"
    assert not list(read_only_dir.glob("parrot-test-sg*"))


def no_space(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_line_naming_the_output_and_leaves_no_tmp_file(tmp_path, source, capsys, monkeypatch):
    monkeypatch.setattr(os, "fsync", no_space)  # what a full disk says at the last flush
    out = tmp_path / "data" / "sg.jsonl"
    assert main(["prepare", str(source), "-o", str(out), "--dev-fraction", "0.3"]) == 2
    line = error_line(capsys)
    assert line in (
        f"parrot prepare: error: {out}: No space left on device",
        f"parrot prepare: error: {tmp_path / 'data' / 'sg.dev.jsonl'}: No space left on device",
    )
    assert leftovers(tmp_path) == [] and not (tmp_path / "data").exists()  # nor the directory it made


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_full_disk_at_an_append_names_the_file():
    """/dev/full: every write fails with ENOSPC, which names no file by itself."""
    with pytest.raises(OSError) as info:
        with AppendWriter("/dev/full", fsync=False) as w:
            w.write({"a": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"


def test_atomic_writer_removes_its_tmp_file_when_the_commit_fails(tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as info:
        with AtomicWriter(out) as w:
            w.write({"a": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---------------------------------------------------------------- folders of plots: report, eval report, stats

STAGES_WITH_PLOTS = ["report", "eval report", "stats"]


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    """The inputs of the three commands that write a folder of plots: real sessions, MT-Bench and
    MT-Bench++ judgments, and a stats folder made from the sessions."""
    from test_report_experiment import QUESTIONS, judgment_file, real_sessions

    tmp = tmp_path_factory.mktemp("plotted")
    real = real_sessions(tmp / "real.jsonl", 30, 3)
    scores = {
        "a": {(q, t): 3 + q % 5 for q in QUESTIONS for t in (1, 2)},
        "b": {(q, t): 4 + q % 4 for q in QUESTIONS for t in (1, 2)},
    }
    mtb = judgment_file(tmp / "judge_mtb.jsonl", "mt-bench", "openai:gpt-4", scores)
    pp = judgment_file(tmp / "judge_pp.jsonl", "mt-bench-pp", "openai:gpt-4", scores)
    stats_dir = str(tmp / "stats")
    assert main(["stats", real, "-o", stats_dir, "tokenizer=none", "embeddings=false"]) == 0
    return {"real": real, "mtb": mtb, "pp": pp, "stats": stats_dir}


def plot_command(stage: str, inputs: dict, out: Path) -> list[str]:
    return {
        "report": ["report", "--stats", inputs["stats"], "--judgments", inputs["mtb"], inputs["pp"]],
        "eval report": ["eval", "report", inputs["mtb"]],
        "stats": ["stats", inputs["real"], "tokenizer=none", "embeddings=false"],
    }[stage] + ["-o", str(out)]


#: The plot that hits the full disk: one whose predecessors were written (report: its three data
#: plots; stats: the first two of its three; eval report: its only one, after report.md and report.json).
FAILING_PLOT = {"report": 4, "stats": 3, "eval report": 1}


def full_disk_at_plot(monkeypatch, n: int) -> list:
    """The ``n``-th plot a run saves hits a full disk: a few bytes reach the file, then the write
    fails with an error that names no file (what PIL's ``close`` said on a full tmpfs). Returns
    the names saved, to be cleared before each run."""
    from matplotlib.figure import Figure

    real, calls = Figure.savefig, []

    def savefig(self, fname, *args, **kwargs):
        calls.append(Path(fname).name)
        if len(calls) < n:
            return real(self, fname, *args, **kwargs)
        Path(fname).write_bytes(b"\x89PNG\r\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", savefig)
    return calls


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fault", ["a plot", "the last flush"])
@pytest.mark.parametrize("stage", STAGES_WITH_PLOTS)
def test_a_full_disk_while_a_folder_of_plots_is_written_is_one_line_and_changes_nothing(
    stage, fault, plotted, tmp_path, capsys, monkeypatch
):
    """A full disk on the way: one line naming the file, no temporary or partial file, nothing
    claimed complete; a new folder is not left behind, and a previous output stays byte for byte
    (its manifest, which vouches for it, included)."""
    previous, fresh = tmp_path / "previous", tmp_path / "fresh"
    assert main(plot_command(stage, plotted, previous)) == 0
    before = snapshot(previous)
    capsys.readouterr()
    with monkeypatch.context() as m:
        calls = []
        if fault == "a plot":
            calls = full_disk_at_plot(m, FAILING_PLOT[stage])
        else:
            m.setattr(os, "fsync", no_space)  # what a full disk says at the last flush
        for out, extra in ((previous, ["--overwrite"]), (fresh, [])):
            calls.clear()
            assert main(plot_command(stage, plotted, out) + extra) == 2
            line = error_line(capsys)
            named = calls[-1] if fault == "a plot" else r"[\w.-]+"
            assert re.fullmatch(rf"parrot {stage}: error: {re.escape(str(out))}/{named}: No space left on device", line)
            assert leftovers(tmp_path) == []
    assert snapshot(previous) == before
    assert not fresh.exists()
    assert main(plot_command(stage, plotted, fresh)) == 0  # nothing left in the way of the next run


@pytest.mark.parametrize("stage", STAGES_WITH_PLOTS)
def test_a_folder_of_plots_that_cannot_be_written_is_one_line_naming_it(stage, plotted, read_only_dir, capsys):
    out = read_only_dir / "parrot-test-plots"
    assert main(plot_command(stage, plotted, out)) == 2
    assert error_line(capsys).startswith(f"parrot {stage}: error: {out}: ")
    assert not out.exists()
