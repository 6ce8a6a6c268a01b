"""The simulator's guardrails in ``parrot synthesize``: no stop before ``min_turns`` answers, a
degenerate question drawn again (up to ``max_redraws`` times, each with a fresh seed) before it
ends a session, every redraw counted by reason and journaled so that a resumed run neither repeats
a draw nor skips one. Against a real HTTP endpoint that cannot ban tokens (so early stops are drawn
again), and SmolLM2 served by llama.cpp, which bans the stop marker at sampling."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections import defaultdict

import pytest
from synth_helpers import Script, is_asker_request, make_cfg, read_out, stop_after, write_seeds

from parrot import ParrotError
from parrot.core.manifest import read_manifest
from parrot.synthesize.journal import journal_path
from parrot.synthesize.roleswap import STOP_MARKER
from parrot.synthesize.stage import synthesize


def _with(cfg, **changes):
    return dataclasses.replace(cfg, **changes)


def place(body: dict) -> tuple[str, int]:
    """(session's first question, answers so far): a session's place, as the asker's request shows it."""
    msgs = body["messages"]
    return msgs[2]["content"], sum(1 for m in msgs if m["role"] == "user") - 1


GOOD = {
    2: "How would that work on a much larger dataset?",
    3: "Can you show a short example in code?",
    4: "What are the common mistakes people make here?",
}


def first_draws_are(bad: str):
    """A simulator whose first draw at every place is ``bad`` and whose redraws are good questions."""
    draws: dict = defaultdict(int)

    def ask(k, body):
        draws[place(body)] += 1
        return bad if draws[place(body)] == 1 else GOOD[k]

    return ask


def test_an_early_stop_at_an_endpoint_that_cannot_ban_is_drawn_again_with_a_fresh_seed(tmp_path, fault_server):
    fault_server.responder = Script(ask=first_draws_are(STOP_MARKER))
    out = tmp_path / "out.jsonl"
    cfg = make_cfg(out, fault_server.base_url, seeds=str(write_seeds(tmp_path / "s.jsonl")), num_sessions=3)
    synthesize(_with(cfg, max_turns=4, min_turns=3))
    recs = read_out(out)
    # before 3 answers the stop is drawn again (after answers 1 and 2); after, it is the simulator's end
    assert [(r["meta"]["turns"], r["meta"]["end_reason"]) for r in recs] == [(3, "stop_marker")] * 3
    assert all(r["meta"]["redraws"] == {"early_stop": 2} for r in recs)
    asks = [b for b in fault_server.requests if is_asker_request(b)]
    assert not any("logit_bias" in b for b in asks)  # an endpoint is never sent a ban
    by_place = defaultdict(list)
    for b in asks:
        by_place[place(b)].append(b["seed"])
    assert all(len(set(seeds)) == len(seeds) for seeds in by_place.values())  # each draw its own seed
    man = read_manifest(out)
    assert man["counts"]["redraw:early_stop"] == 6 and man["guardrails"] == {"stop_banned_at_sampling": False}


@pytest.mark.parametrize(
    "bad,reason",
    [
        ("Why?", "too_short"),
        (" ".join(["word"] * 40), "too_long"),
        ("Sure! Here is a fuller explanation of the topic.", "assistant_like"),
        ("Question 1: tell me more about it please", None),  # set below: an earlier question, near word for word
    ],
)
def test_each_kind_of_degenerate_question_is_drawn_again_and_counted(tmp_path, fault_server, bad, reason):
    seeds = ["Question 1: tell me more about it please, in detail"]
    if reason is None:
        reason = "repeated_question"
    fault_server.responder = Script(ask=first_draws_are(bad))
    out = tmp_path / "out.jsonl"
    cfg = make_cfg(out, fault_server.base_url, seeds=str(write_seeds(tmp_path / "s.jsonl", seeds)), num_sessions=1)
    synthesize(_with(cfg, max_turns=3, max_question_words=30))
    [rec] = read_out(out)
    assert rec["meta"]["end_reason"] == "max_turns" and rec["meta"]["turns"] == 3
    assert rec["meta"]["redraws"] == {reason: 2}  # before questions 2 and 3
    assert bad not in [m["content"] for m in rec["messages"]]


def test_a_question_still_degenerate_after_max_redraws_ends_the_session_with_its_reason(tmp_path, fault_server):
    fault_server.responder = Script(ask=lambda k, body: "Why?")
    out = tmp_path / "out.jsonl"
    cfg = make_cfg(out, fault_server.base_url, seeds=str(write_seeds(tmp_path / "s.jsonl")), num_sessions=2)
    synthesize(_with(cfg, max_turns=3, max_redraws=2))
    recs = read_out(out)
    assert [(r["meta"]["turns"], r["meta"]["end_reason"], r["meta"]["redraws"]) for r in recs] == [
        (1, "too_short", {"too_short": 2})
    ] * 2
    assert sum(is_asker_request(b) for b in fault_server.requests) == 2 * 3  # one draw and two redraws each
    # with no redraws, the first degenerate question ends the session
    fault_server.requests.clear()
    synthesize(_with(cfg, output=str(tmp_path / "none.jsonl"), max_turns=3, max_redraws=0))
    assert [r["meta"]["redraws"] for r in read_out(tmp_path / "none.jsonl")] == [{}, {}]
    assert sum(is_asker_request(b) for b in fault_server.requests) == 2


def test_settings_that_could_never_hold_are_refused_before_anything_runs(tmp_path, fault_server):
    seeds = str(write_seeds(tmp_path / "s.jsonl"))
    with pytest.raises(ParrotError, match="max_question_words=2 is below min_question_words=3"):
        synthesize(
            _with(
                make_cfg(tmp_path / "b.jsonl", fault_server.base_url, seeds=seeds),
                min_question_words=3,
                max_question_words=2,
            )
        )
    assert fault_server.requests == [] and not (tmp_path / "b.jsonl").exists()


def test_a_resume_in_the_middle_of_a_redraw_neither_repeats_nor_skips_a_draw(tmp_path, fault_server):
    """SIGKILL while the second draw of question 2 is being generated (the first was too short and
    journaled as drawn again): ``--resume`` makes that second draw again, with its seed, and the
    record counts the redraw made before the kill."""
    seeds = write_seeds(tmp_path / "s.jsonl", ["How do I sort a list in Python?"])
    out = tmp_path / "out.jsonl"
    url = fault_server.base_url
    argv = [sys.executable, "-m", "parrot", "synthesize", "-o", str(out), "--seeds", str(seeds)]
    argv += ["--num-sessions", "1", "--max-turns", "3", "--asker", "openai:sim", "--assistant", "openai:chat"]
    argv += [f"asker.base_url={url}", f"assistant.base_url={url}", "asker.max_retries=0", "assistant.max_retries=0"]
    script, held = Script(ask=first_draws_are("Why?")), threading.Event()
    release = threading.Event()

    def responder(body):
        if is_asker_request(body) and len([b for b in fault_server.requests if is_asker_request(b)]) == 2:
            held.set()  # the second draw of question 2: in flight when the process dies
            release.wait(60)
        return script(body)

    fault_server.responder = responder
    proc = subprocess.Popen(argv, env={**os.environ, "PARROT_NO_PROGRESS": "1"}, stdout=subprocess.PIPE)
    try:
        assert held.wait(120)
        proc.kill()
        proc.wait(30)
    finally:
        release.set()
    entries = [json.loads(line) for line in journal_path(out).read_text().splitlines()]
    assert {"i": 0, "n": 2, "again": 1, "redraws": {"too_short": 1}} in entries
    first_run = [b["seed"] for b in fault_server.requests if is_asker_request(b)]

    fault_server.requests.clear()
    fault_server.responder = Script()  # a good question at every draw
    from parrot import cli

    assert cli.main([*argv[3:], "--resume"]) == 0
    resumed = [b["seed"] for b in fault_server.requests if is_asker_request(b)]
    assert resumed[0] == first_run[1] != first_run[0]  # the draw cut short, again: not the first, not a third
    [rec] = read_out(out)
    assert rec["meta"]["turns"] == 3 and rec["meta"]["redraws"] == {"too_short": 1}
    assert read_manifest(out)["counts"]["redraw:too_short"] == 1


def test_smollm2_on_llama_cpp_bans_the_stop_marker_until_min_turns(tmp_path):
    """A real simulator on a real engine: the prompted SmolLM2 asker, its stop marker banned at
    sampling before ``min_turns`` answers, never ends a session before then."""
    seeds = write_seeds(tmp_path / "s.jsonl")
    out = tmp_path / "out.jsonl"
    from parrot.core.config import build_config
    from parrot.synthesize.stage import SynthesizeConfig

    cfg = build_config(
        SynthesizeConfig,
        {
            "output": str(out),
            "seeds": str(seeds),
            "num_sessions": 3,
            "max_turns": 2,
            "min_turns": 2,
            "asker_mode": "prompted",
            "asker": {"spec": "smollm2", "max_tokens": 24, "slots": 3},
            "assistant": {"spec": "smollm2", "max_tokens": 24, "slots": 3},
        },
    )
    synthesize(cfg)
    recs = read_out(out)
    assert len(recs) == 3 and read_manifest(out)["guardrails"] == {"stop_banned_at_sampling": True}
    for r in recs:
        assert "early_stop" not in r["meta"]["redraws"]  # the engine never let it stop early
        assert r["meta"]["end_reason"] != "stop_marker" or r["meta"]["turns"] >= 2
        assert all(STOP_MARKER not in m["content"] for m in r["messages"])


def test_the_guardrails_apply_to_the_prompted_self_chat_arm_alike(tmp_path, fault_server):
    fault_server.responder = Script(ask=stop_after(0))
    out = tmp_path / "out.jsonl"
    cfg = make_cfg(out, fault_server.base_url, seeds=str(write_seeds(tmp_path / "s.jsonl")), num_sessions=2)
    synthesize(_with(cfg, asker_mode="prompted", max_turns=3, min_turns=2, max_redraws=1))
    assert [(r["meta"]["turns"], r["meta"]["end_reason"], r["meta"]["redraws"]) for r in read_out(out)] == [
        (1, "stop_marker", {"early_stop": 1})
    ] * 2
