"""parrot synthesize against a real OpenAI-compatible HTTP server (the scriptable fault server):
session shape, end reasons, seeds and topics, failures, resume and its refusal."""

from __future__ import annotations

import json

import pytest
from fixtures.servers import FaultServer
from synth_helpers import SEED_QUESTIONS, Script, make_cfg, read_out, stop_after, write_seeds

from parrot import ParrotError
from parrot.core.manifest import read_manifest
from parrot.core.outputs import failures_path
from parrot.synthesize.journal import journal_path
from parrot.synthesize.session import degenerate_reason, session_id
from parrot.synthesize.stage import shard_indices, synthesize


def test_sessions_alternate_start_from_seed_questions_and_record_why_they_ended(tmp_path, fault_server):
    fault_server.responder = Script()
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    out = tmp_path / "out.jsonl"
    synthesize(make_cfg(out, fault_server.base_url, seeds=str(seeds), num_sessions=5))
    recs = read_out(out)
    assert sorted(r["id"] for r in recs) == [session_id("synth", 0, i) for i in range(5)]
    for r in recs:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * 3
        assert r["messages"][0]["content"] in SEED_QUESTIONS
        assert r["messages"][1]["content"] == f"Answer to: {r['messages'][0]['content']}"
        assert r["messages"][2]["content"].startswith("Follow-up number 2")
        meta = r["meta"]
        assert meta["end_reason"] == "max_turns" and meta["turns"] == 3
        assert meta["asker"]["spec"] == "openai:sim" and meta["asker"]["mode"] == "trained"
        assert meta["assistant"]["sampling"]["max_tokens"] == 512
    man = read_manifest(out)
    assert man["complete"] and man["counts"]["sessions"] == 5 and man["counts"]["turns"] == 15
    assert not journal_path(out).exists()


def test_every_request_carries_explicit_sampling_with_a_per_call_seed(tmp_path, fault_server):
    fault_server.responder = Script()
    out = tmp_path / "out.jsonl"
    synthesize(
        make_cfg(
            out,
            fault_server.base_url,
            seeds=str(write_seeds(tmp_path / "s.jsonl")),
            num_sessions=2,
            max_turns=2,
            **{
                "asker": {"spec": "openai:sim", "base_url": fault_server.base_url, "temperature": 0.3, "max_retries": 0}
            },
        )
    )
    asks = [b for b in fault_server.requests if b["model"] == "sim"]
    assert asks and all(b["temperature"] == 0.3 for b in asks)
    seeds = [b["seed"] for b in fault_server.requests]
    assert len(set(seeds)) == len(seeds)  # every call its own seed, derived from (run seed, index, position)


def test_stop_marker_ends_the_session(tmp_path, fault_server):
    fault_server.responder = Script(ask=stop_after(1))
    out = tmp_path / "out.jsonl"
    synthesize(
        make_cfg(out, fault_server.base_url, seeds=str(write_seeds(tmp_path / "s.jsonl")), num_sessions=2, max_turns=5)
    )
    for r in read_out(out):
        assert r["meta"]["end_reason"] == "stop_marker"
        assert r["meta"]["turns"] == 1 and len(r["messages"]) == 2


@pytest.mark.parametrize(
    "ask,reason",
    [
        (lambda k, body: body["messages"][2]["content"], "repeated_question"),  # the first question again
        (lambda k, body: body["messages"][-1]["content"], "echoed_answer"),  # the last answer said back
    ],
)
def test_degenerate_question_ends_the_session(tmp_path, fault_server, ask, reason):
    fault_server.responder = Script(ask=ask)
    out = tmp_path / "out.jsonl"
    synthesize(make_cfg(out, fault_server.base_url, seeds=str(write_seeds(tmp_path / "s.jsonl")), num_sessions=2))
    assert [r["meta"]["end_reason"] for r in read_out(out)] == [reason, reason]
    assert all(r["meta"]["turns"] == 1 for r in read_out(out))


def test_degenerate_reason_rules():
    msgs = [
        {"role": "user", "content": "What is X?"},
        {"role": "assistant", "content": "X is a letter of the Latin alphabet used in algebra for unknowns."},
    ]
    assert degenerate_reason("   ", msgs) == "empty_question"
    assert degenerate_reason("what is x", msgs) == "repeated_question"
    assert degenerate_reason("X is a letter of the Latin alphabet used in algebra", msgs) == "echoed_answer"
    assert degenerate_reason("And what about Y?", msgs) is None


def test_topics_make_the_simulator_write_the_first_question(tmp_path, fault_server):
    script = Script(ask=lambda k, body: f"Q{k} on {body['messages'][1]['content'].splitlines()[-1]}?")
    fault_server.responder = script
    topics = tmp_path / "topics.txt"
    topics.write_text("# comment\nbaking bread\n\nrust lifetimes\n")
    out = tmp_path / "out.jsonl"
    synthesize(make_cfg(out, fault_server.base_url, topics=str(topics), num_sessions=4, max_turns=2))
    recs = read_out(out)
    assert len(recs) == 4
    for r in recs:
        topic = r["meta"]["seed"]["topic"]
        assert topic in ("baking bread", "rust lifetimes") and r["meta"]["seed"]["kind"] == "topic"
        assert r["messages"][0]["content"] == f"Q1 on Topic: {topic}?"
    assert {r["meta"]["seed"]["topic"] for r in recs} == {"baking bread", "rust lifetimes"}


def test_same_run_seed_picks_the_same_seeds_and_a_new_seed_changes_them(tmp_path, fault_server):
    fault_server.responder = Script()
    seeds = write_seeds(tmp_path / "s.jsonl", [f"Question number {i}?" for i in range(20)])
    firsts = []
    for name, run_seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.jsonl"
        synthesize(make_cfg(out, fault_server.base_url, seeds=str(seeds), num_sessions=6, max_turns=1, seed=run_seed))
        firsts.append([r["messages"][0]["content"] for r in sorted(read_out(out), key=lambda r: r["id"])])
    assert firsts[0] == firsts[1] and firsts[0] != firsts[2]


def test_a_failed_assistant_call_is_retried_later_and_the_session_completes(tmp_path, fault_server):
    fault_server.responder = Script()
    fault_server.add_faults("500")  # the first request of the run: an assistant answer (seeded question)
    out = tmp_path / "out.jsonl"
    synthesize(make_cfg(out, fault_server.base_url, seeds=str(write_seeds(tmp_path / "s.jsonl")), num_sessions=1))
    [rec] = read_out(out)
    assert rec["meta"]["turns"] == 3 and rec["meta"]["failed_calls"] == 1
    assert read_manifest(out)["counts"]["call_failed:assistant"] == 1


def test_a_failed_call_waits_longer_before_each_new_try(tmp_path, fault_server, monkeypatch):
    import asyncio

    import parrot.synthesize.loops as synth

    waits, real_sleep = [], asyncio.sleep

    async def record(seconds):
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(synth.asyncio, "sleep", record)
    fault_server.responder = Script()
    fault_server.add_faults("500", "500")  # the session's first answer fails twice, then succeeds
    out = tmp_path / "out.jsonl"
    synthesize(
        make_cfg(
            out,
            fault_server.base_url,
            seeds=str(write_seeds(tmp_path / "s.jsonl")),
            num_sessions=1,
            step_retry_delay=7.5,
        )
    )
    assert [w for w in waits if w] == [7.5, 15.0]
    assert read_out(out)[0]["meta"]["failed_calls"] == 2


def test_a_dead_assistant_endpoint_loses_no_session_and_resume_finishes_the_run(tmp_path, fault_server):
    fault_server.responder = Script(ask=stop_after(2))
    dead = FaultServer(Script()).start()
    try:
        dead.add_faults(*["500"] * 4)  # session 0's first answer fails 3 times: no turn, not written
        seeds = write_seeds(tmp_path / "s.jsonl")
        out = tmp_path / "out.jsonl"
        kw = dict(seeds=str(seeds), num_sessions=2, max_turns=3, in_flight=1, step_retries=2)
        with pytest.raises(ParrotError, match="1 of 2 sessions failed with no complete turn"):
            synthesize(make_cfg(out, fault_server.base_url, dead.base_url, **kw))
        assert len(read_out(out)) == 1
        [failed] = read_out(failures_path(out))
        assert failed["reason"] == "assistant_failed" and failed["id"] == session_id("synth", 0, 0)
        assert read_manifest(out)["complete"] is False
        # The endpoint recovers: --resume runs only the missing session.
        synthesize(make_cfg(out, fault_server.base_url, dead.base_url, resume=True, **kw))
        recs = read_out(out)
        assert sorted(r["id"] for r in recs) == [session_id("synth", 0, i) for i in range(2)]
        assert read_manifest(out)["complete"] is True
    finally:
        dead.stop()


def test_the_failures_file_holds_only_the_failures_that_still_stand_after_a_resume(tmp_path, fault_server):
    fault_server.responder = Script(ask=stop_after(1))
    out = tmp_path / "out.jsonl"
    kw = dict(seeds=str(write_seeds(tmp_path / "s.jsonl")), num_sessions=4, in_flight=1, step_retries=0)
    fault_server.add_faults("500", "500", "500")  # sessions 0, 1 and 2 fail at their first answer
    with pytest.raises(ParrotError, match="3 of 4 sessions failed"):
        synthesize(make_cfg(out, fault_server.base_url, **kw))
    assert [f["index"] for f in read_out(failures_path(out))] == [0, 1, 2]
    fault_server.add_faults("500")  # session 0 fails again; 1 and 2 now succeed
    with pytest.raises(ParrotError, match="1 of 4 sessions failed"):
        synthesize(make_cfg(out, fault_server.base_url, resume=True, **kw))
    [still] = read_out(failures_path(out))
    assert still["index"] == 0
    synthesize(make_cfg(out, fault_server.base_url, resume=True, **kw))
    assert len(read_out(out)) == 4 and read_manifest(out)["complete"] is True
    assert not failures_path(out).exists()


def test_an_assistant_failing_mid_session_keeps_the_complete_turns(tmp_path, fault_server):
    fault_server.responder = Script()
    script = Script()
    flaky = FaultServer().start()

    def answer_once_then_fail(body):
        flaky.add_faults(*["500"] * 10)  # every request after the first one fails
        return script(body)

    flaky.responder = answer_once_then_fail
    try:
        out = tmp_path / "out.jsonl"
        synthesize(
            make_cfg(
                out,
                fault_server.base_url,
                flaky.base_url,
                seeds=str(write_seeds(tmp_path / "s.jsonl")),
                num_sessions=1,
                step_retries=1,
            )
        )
        [rec] = read_out(out)
        assert rec["meta"]["end_reason"] == "assistant_failed" and rec["meta"]["turns"] == 1
        assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]  # no unanswered question
    finally:
        flaky.stop()


def test_existing_output_needs_resume_and_resume_refuses_a_changed_config(tmp_path, fault_server):
    fault_server.responder = Script()
    seeds = str(write_seeds(tmp_path / "s.jsonl"))
    out = tmp_path / "out.jsonl"
    synthesize(make_cfg(out, fault_server.base_url, seeds=seeds, num_sessions=2))
    with pytest.raises(ParrotError, match="--resume"):
        synthesize(make_cfg(out, fault_server.base_url, seeds=seeds, num_sessions=2))
    with pytest.raises(ParrotError, match="config differs"):
        synthesize(make_cfg(out, fault_server.base_url, seeds=seeds, num_sessions=3, max_turns=4, resume=True))
    before = len(fault_server.requests)
    synthesize(make_cfg(out, fault_server.base_url, seeds=seeds, num_sessions=3, resume=True, force=True))
    assert len(read_out(out)) == 3
    assert len(fault_server.requests) - before == 5  # only the new session ran: 3 answers + 2 questions


def test_resume_refuses_a_seed_file_changed_under_the_same_name(tmp_path, fault_server):
    fault_server.responder = Script()
    seeds = str(write_seeds(tmp_path / "s.jsonl"))
    out = tmp_path / "out.jsonl"
    synthesize(make_cfg(out, fault_server.base_url, seeds=seeds, num_sessions=1))
    write_seeds(tmp_path / "s.jsonl", SEED_QUESTIONS[::-1])  # regenerated: another pool, same path
    with pytest.raises(ParrotError, match="config differs"):
        synthesize(make_cfg(out, fault_server.base_url, seeds=seeds, num_sessions=2, resume=True))


def test_a_missing_prompt_file_is_an_error_before_anything_runs(tmp_path, fault_server):
    out = tmp_path / "out.jsonl"
    with pytest.raises(ParrotError, match=r"--prompted-prompt .*nope\.txt: file not found"):
        synthesize(
            make_cfg(
                out,
                fault_server.base_url,
                seeds=str(write_seeds(tmp_path / "s.jsonl")),
                asker_mode="prompted",
                prompted_prompt=str(tmp_path / "nope.txt"),
            )
        )
    assert not out.exists() and fault_server.requests == []


def test_shards_partition_the_session_indices():
    parts = [shard_indices(10, f"{i}/3") for i in range(3)]
    assert sorted(sum(parts, [])) == list(range(10))
    with pytest.raises(ParrotError, match="i/n"):
        shard_indices(10, "3/3")


def test_resume_continues_sessions_from_the_journal(tmp_path, fault_server):
    """A journal left by a crash: the restored session continues where it stopped."""
    fault_server.responder = Script()
    seeds = str(write_seeds(tmp_path / "s.jsonl"))
    out = tmp_path / "out.jsonl"
    cfg = make_cfg(out, fault_server.base_url, seeds=seeds, num_sessions=1)
    synthesize(cfg)
    [full] = read_out(out)
    # Pretend the process died after two answers of that session were journaled.
    out.write_text("")
    with journal_path(out).open("w") as fh:
        for pos, m in enumerate(full["messages"][:4]):
            if pos:
                fh.write(json.dumps({"i": 0, "n": pos, "m": m}) + "\n")
        fh.write('{"i": 0, "n": 4, "m": {"role": "us')  # torn last line
    before = len(fault_server.requests)
    synthesize(make_cfg(out, fault_server.base_url, seeds=seeds, num_sessions=1, resume=True))
    [again] = read_out(out)
    assert again["messages"] == full["messages"]
    assert len(fault_server.requests) - before == 2  # one question + one answer, not the whole session
