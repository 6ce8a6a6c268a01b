"""A real ``python -m parrot synthesize`` process killed with SIGKILL mid-run, then resumed:
the final file holds exactly --num-sessions complete sessions with no duplicate id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
from synth_helpers import Script, read_out, write_seeds

from parrot.synthesize.journal import journal_path
from parrot.synthesize.session import session_id

N, TURNS = 6, 3  # 6 sessions x (3 answers + 2 questions) = 30 requests in an uninterrupted run


def synth_cmd(out, seeds, url, *extra):
    return [
        sys.executable,
        "-m",
        "parrot",
        "synthesize",
        "-o",
        str(out),
        "--seeds",
        str(seeds),
        "--num-sessions",
        str(N),
        "--max-turns",
        str(TURNS),
        "--asker",
        "openai:sim",
        "--assistant",
        "openai:chat",
        f"asker.base_url={url}",
        f"assistant.base_url={url}",
        "asker.concurrency=2",
        "assistant.concurrency=2",
        "asker.max_retries=0",
        "assistant.max_retries=0",
        *extra,
    ]


@pytest.mark.parametrize("kill_at", [4, 13, 24])
def test_sigkill_mid_run_then_resume_gives_exactly_n_sessions(tmp_path, fault_server, kill_at):
    script = Script()
    reached, release = threading.Event(), threading.Event()

    def responder(body):
        if len(fault_server.requests) >= kill_at:  # hold the call in flight: the kill lands mid-generation
            reached.set()
            release.wait(60)
        return script(body)

    fault_server.responder = responder
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PARROT_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        synth_cmd(out, seeds, fault_server.base_url), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert reached.wait(120), proc.communicate(timeout=5)[0].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        release.set()
    assert proc.returncode == -signal.SIGKILL
    assert len(read_out(out)) < N if out.exists() else True
    if kill_at > 5:  # past the first session's worth of calls: work in flight was journaled
        assert journal_path(out).exists() and journal_path(out).stat().st_size > 0

    fault_server.responder = script
    done = subprocess.run(
        synth_cmd(out, seeds, fault_server.base_url, "--resume"), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    recs = read_out(out)
    ids = [r["id"] for r in recs]
    assert sorted(ids) == [session_id("synth", 0, i) for i in range(N)]  # exactly N, no duplicates
    for r in recs:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"] * TURNS
        assert r["meta"]["end_reason"] == "max_turns"
    assert not journal_path(out).exists()
    # The journal kept every finished call: the only calls done twice are the (at most 2) killed in flight.
    assert len(fault_server.requests) <= N * (2 * TURNS - 1) + 2
