"""Two runs on one output: the second stops at once, with one line, before it deletes, loads or
writes anything; the first run's work is intact and it finishes. The first run is a real
``python -m parrot`` process kept busy by a server that holds its replies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from synth_helpers import Script, read_out, write_seeds
from test_outputs import STAGES, Stand_in, make, snapshot_of
from test_synthesize_kill import TURNS, N, synth_cmd

from parrot import ParrotError, cli
from parrot.core.locks import lock_path, output_lock
from parrot.core.manifest import manifest_path
from parrot.core.outputs import failures_path
from parrot.synthesize.journal import journal_path
from parrot.synthesize.session import session_id

ENV = {**os.environ, "PARROT_NO_PROGRESS": "1"}


class HeldRun:
    """A real first run, held mid-run: from request ``hold_at`` on, the server keeps the replies
    back until :meth:`finish` releases them. Built once ``parallel`` requests are held (every
    worker of the run waits on one): the run writes nothing until then."""

    def __init__(self, fault_server, argv, respond, hold_at, parallel):
        self.reached, self.release = threading.Event(), threading.Event()
        lock, held = threading.Lock(), []

        def responder(body):
            if len(fault_server.requests) >= hold_at:
                with lock:
                    held.append(body)
                    if len(held) >= parallel:
                        self.reached.set()
                self.release.wait(60)
            return respond(body)

        fault_server.responder = responder
        self.proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if not self.reached.wait(120):
            self.proc.kill()
            pytest.fail(self.proc.communicate(timeout=5)[0].decode()[-2000:])

    def finish(self) -> tuple[int, str]:
        self.release.set()
        out = self.proc.communicate(timeout=120)[0].decode()
        return self.proc.returncode, out

    def stop(self) -> None:
        self.release.set()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def snapshot(*paths) -> dict:
    """Each file's inode and bytes (a file deleted and written again has another inode)."""
    return {str(p): (p.stat().st_ino, p.read_bytes()) for p in paths if p.exists()}


@pytest.fixture
def first_synth(tmp_path, fault_server):
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    out = tmp_path / "out.jsonl"
    argv = synth_cmd(out, seeds, fault_server.base_url)
    run = HeldRun(fault_server, argv, Script(), hold_at=13, parallel=2)  # two sessions done, two in flight
    try:
        yield run, argv, out
    finally:
        run.stop()


def the_error(out) -> str:
    return f"{out}: another process is writing it, or reading it as an input (the same command running twice?); wait for it to finish or stop it"


def test_overwrite_while_the_same_output_is_being_written_stops_and_keeps_the_first_run(first_synth, fault_server):
    run, argv, out = first_synth
    files = (out, journal_path(out), manifest_path(out))
    before = snapshot(*files)
    assert out.exists() and journal_path(out).exists()  # the first run has work on disk
    requests = len(fault_server.requests)

    second = subprocess.run(argv + ["--overwrite"], env=ENV, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert second.stderr.splitlines() == [f"parrot synthesize: error: {the_error(out)}"]
    assert snapshot(*files) == before  # nothing deleted, nothing written
    assert len(fault_server.requests) == requests  # and no model called

    rc, log = run.finish()
    assert rc == 0, log[-2000:]
    recs = read_out(out)
    assert sorted(r["id"] for r in recs) == [session_id("synth", 0, i) for i in range(N)]
    assert all(len(r["messages"]) == 2 * TURNS for r in recs)
    assert not journal_path(out).exists() and not failures_path(out).exists()


def test_resume_while_the_same_output_is_being_written_stops_before_loading_a_model(first_synth, monkeypatch, capsys):
    run, argv, out = first_synth
    before = snapshot(out, journal_path(out), manifest_path(out))
    loaded = []
    monkeypatch.setattr("parrot.backends.executor.load_backend", lambda cfg: loaded.append(cfg))  # a server start

    assert cli.main(argv[3:] + ["--resume"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"parrot synthesize: error: {the_error(out)}"]
    assert loaded == []
    assert snapshot(out, journal_path(out), manifest_path(out)) == before
    rc, log = run.finish()
    assert rc == 0, log[-2000:]
    assert len(read_out(out)) == N


def test_eval_answer_overwrite_while_answering_stops_and_keeps_the_answers(tmp_path, fault_server, capsys):
    out = tmp_path / "A.jsonl"
    argv = [
        "eval",
        "answer",
        "--bench",
        "mt-bench",
        "--limit",
        "4",
        "--model",
        "openai:model-a",
        f"model.base_url={fault_server.base_url}",
        "model.max_retries=0",
        "model.concurrency=1",
        "-o",
        str(out),
    ]
    run = HeldRun(
        fault_server, [sys.executable, "-m", "parrot", *argv], lambda body: "an answer", hold_at=5, parallel=1
    )  # two questions answered, the third in flight
    try:
        before = snapshot(out, manifest_path(out))
        assert len(read_out(out)) == 2
        assert cli.main(argv + ["--overwrite"]) == 2
        assert capsys.readouterr().err.splitlines() == [f"parrot eval answer: error: {the_error(out)}"]
        assert snapshot(out, manifest_path(out)) == before
        rc, log = run.finish()
    finally:
        run.stop()
    assert rc == 0, log[-2000:]
    assert [r["question_id"] for r in read_out(out)] == [81, 82, 83, 84]
    assert json.loads(manifest_path(out).read_text())["complete"] is True


@pytest.mark.parametrize("cmd", STAGES, ids=lambda c: c.name)
def test_every_stage_takes_the_lock_before_it_removes_anything(cmd, tmp_path):
    """The real stage function, on an output another run holds: --overwrite stops at once, the
    output, its manifest and its other files as they were."""
    stand_in = Stand_in()
    cfg = make(cmd, tmp_path)
    stand_in.run(cfg)
    before = snapshot_of(cfg)
    assert before
    stage = cmd.run
    with output_lock(cfg.output):  # another run on it, in the middle of its work
        with pytest.raises(ParrotError) as info:
            stage(make(cmd, tmp_path, overwrite=True))
        assert str(info.value) == the_error(cfg.output)
        assert snapshot_of(cfg) == before
    assert snapshot_of(cfg) == before and not lock_path(cfg.output).exists()
