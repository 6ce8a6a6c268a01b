"""Simulator measures on real files: synthesize runs against the scriptable HTTP server (a
simulator that stops, one that degenerates, one seeded by topics), the real filter stage on
their output, and hand-written real sessions."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from synth_helpers import Script, is_asker_request, make_cfg, stop_after, write_seeds

from parrot.core.config import build_config
from parrot.filter.stage import FilterConfig, filter_sessions
from parrot.stats.simulator import MIN_SESSIONS, ks_statistic, simulator_measures, total_variation
from parrot.synthesize.stage import synthesize

SEEDS = ["How do I sort a list in Python?", "What is a monad?", "Plan a trip to Rome for me."]


def write_real(path, lengths):
    with path.open("w") as fh:
        for i, n in enumerate(lengths):
            msgs = []
            for t in range(n):
                msgs += [{"role": "user", "content": f"real q {i}.{t}"}, {"role": "assistant", "content": "a"}]
            fh.write(json.dumps({"id": f"r{i}", "messages": msgs}) + "\n")
    return path


def test_a_simulator_that_stops_itself(tmp_path, fault_server):
    fault_server.responder = Script(ask=stop_after(2))
    out = tmp_path / "synth.jsonl"
    synthesize(make_cfg(out, fault_server.base_url, seeds=str(write_seeds(tmp_path / "s.jsonl")), max_turns=5))
    real = write_real(tmp_path / "real.jsonl", [1, 2, 2, 3, 12])
    m = simulator_measures(str(out), str(real))
    assert m["sessions"] == 4 and m["too_few"] and m["min_sessions"] == MIN_SESSIONS
    assert m["self_ended"] == 1.0 and m["end_reasons"] == {"stop_marker": 4}
    assert m["asker"] == {"spec": "openai:sim", "mode": "trained"} and m["max_turns"] == 5
    assert m["turns"] == {"n": 4, "mean": 2.0, "median": 2.0, "hist": {2: 4}}
    assert m["real_turns"]["hist"] == {1: 1, 2: 2, 3: 1, 12: 1} and m["real_turns"]["median"] == 2.0
    # real lengths capped at max_turns=5: {1: .2, 2: .4, 3: .2, 5: .2} against {2: 1}
    assert m["turns_distance"] == {"ks": pytest.approx(0.4), "tv": pytest.approx(0.6), "real_capped_at": 5}
    ra = m["role_adherence"]
    assert (
        ra["questions"] == 4 and ra["degenerate"] == 0 and ra["share"] == 0.0
    )  # the seed question is not the simulator's
    fq = m["first_questions"]
    assert fq["topic_seeded"] is False and fq["distinct_2"] is None and "seed questions" in fq["reason"]
    assert "Kolmogorov-Smirnov" in m["note"]
    json.dumps(m)  # JSON-able


ANSWER = (
    "Python sorts lists with the built in sorted function which returns a new list while the sort "
    "method changes the list in place and both accept a key"
)


def degenerating(k, body):
    """Question 2 is fine, 3 restates the answer (what synthesize lets through and the filter's
    third role-confusion sign catches), 4 is one word, 5 repeats question 2 (at every draw)."""
    return {
        2: "Can you explain that part in more detail?",
        3: f"So {ANSWER}",
        4: "ok",
    }.get(k, "Can you explain that part in more detail?")


@pytest.mark.parametrize("role_confusion", [True, False])
def test_degenerate_questions_from_end_reasons_and_the_filters_rules(tmp_path, fault_server, role_confusion):
    script = Script(ask=degenerating)
    fault_server.responder = lambda body: script(body) if is_asker_request(body) else ANSWER
    out = tmp_path / "synth.jsonl"
    seeds = write_seeds(tmp_path / "s.jsonl")
    cfg = make_cfg(out, fault_server.base_url, seeds=str(seeds), num_sessions=3, max_turns=6, min_question_words=1)
    synthesize(cfg)
    filtered = tmp_path / "filtered.jsonl"
    filter_sessions(
        build_config(
            FilterConfig,
            {"input": str(out), "output": str(filtered), "role_confusion": role_confusion, "near_duplicate": 1},
        )
    )
    m = simulator_measures(str(out), str(seeds), filtered=str(filtered))
    assert m["end_reasons"] == {"repeated_question": 3} and m["self_ended"] == 0.0
    assert m["turns"]["hist"] == {4: 3}
    ra = m["role_adherence"]
    # per session: questions 2-4 in the file, the repeat that ended it; the seed is not counted
    assert ra["questions"] == 12
    expected = {"too_short": 3, "repeated_question": 3, **({"role_confused": 3} if role_confusion else {})}
    assert ra["by_reason"] == expected and ra["degenerate"] == sum(expected.values())
    assert ra["share"] == pytest.approx(ra["degenerate"] / 12)
    # what the filter did, as its manifest records it: it acts on the first bad question only
    assert ra["filter"]["read"] == 3
    assert ra["filter"]["cut"] == ({"role_confused": 3} if role_confusion else {"too_short": 3})
    assert ra["filter"]["on_bad_question"] == "cut" and ra["filter"]["turns_cut"] > 0


def test_topic_seeded_first_questions_diversity(tmp_path, fault_server):
    fault_server.responder = Script(ask=lambda k, body: f"Q{k} on {body['messages'][1]['content'].splitlines()[-1]}?")
    topics = tmp_path / "topics.txt"
    topics.write_text("baking bread\nrust lifetimes\nblack holes\n")
    out = tmp_path / "synth.jsonl"
    synthesize(make_cfg(out, fault_server.base_url, topics=str(topics), num_sessions=3, max_turns=2))
    real = write_real(tmp_path / "real.jsonl", [2, 2, 2])
    m = simulator_measures(str(out), str(real))
    fq = m["first_questions"]
    assert fq["topic_seeded"] and fq["n"] == 3 == fq["sessions"]
    # "q1 on topic: X" -> bigrams (q1 on) (on topic) (topic X1) (X1 X2): 2 shared + 2 own per question
    assert fq["distinct_2"] == pytest.approx(8 / 12)
    assert 0.0 < fq["cosine_distance"] < 1.0
    assert m["role_adherence"]["questions"] == 6  # the simulator wrote question 1 too
    assert m["turns_distance"]["ks"] == 0.0 == m["turns_distance"]["tv"]
    # a sample of 2 of the 3 first questions; embeddings off: the rest still stands
    small = simulator_measures(str(out), str(real), sample=2, embed_model="none")
    assert small["first_questions"]["n"] == 2 and small["first_questions"]["sessions"] == 3
    assert small["first_questions"]["cosine_distance"] is None and small["first_questions"]["embed_note"]


def test_small_or_missing_data_never_raises(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    m = simulator_measures(str(empty), str(tmp_path / "missing.jsonl"), filtered=str(tmp_path / "nope.jsonl"))
    assert m["sessions"] == 0 and m["too_few"] and m["self_ended"] is None
    assert m["turns"] == {"n": 0, "mean": None, "median": None, "hist": {}} and m["real_turns"]["n"] == 0
    assert m["turns_distance"]["ks"] is None and m["role_adherence"]["share"] is None
    assert m["first_questions"]["topic_seeded"] is False
    json.dumps(m)


def test_distances_on_known_samples():
    assert ks_statistic(Counter({1: 1}), Counter({5: 1})) == 1.0 == total_variation(Counter({1: 1}), Counter({5: 1}))
    same = Counter({2: 3, 4: 1})
    assert ks_statistic(same, Counter({2: 6, 4: 2})) == 0.0 == total_variation(same, Counter({2: 6, 4: 2}))
    assert ks_statistic(Counter(), same) is None


# ---------------------------------------------------------------- intervals, redraws: a hand-written run


def session(i, questions, end_reason, redraws=None):
    msgs = []
    for q in questions:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": "An answer."}]
    meta = {"end_reason": end_reason, "seed": {"kind": "topic"}}
    if redraws is not None:
        meta["redraws"] = redraws
    return {"id": f"s{i}", "messages": msgs, "meta": meta}


def write_sessions(path, sessions):
    path.write_text("".join(json.dumps(s) + "\n" for s in sessions))
    return str(path)


HAND = [  # topic-seeded: the simulator wrote every question, the first included
    session(1, ["How do I sort a list", "Can you sort it in reverse"], "stop_marker", {"too_short": 1}),
    session(2, ["What is a monad exactly"], "repeated_question", {"echoed_answer": 2}),
    session(3, ["Plan a trip to Rome", "ok", "What about the food there"], "max_turns"),  # "ok": too_short
    session(4, ["How do I sort a dict", "And by value please"], "stop_marker", {}),
]


def test_the_measures_of_a_hand_written_run_and_their_intervals(tmp_path):
    out = write_sessions(tmp_path / "synth.jsonl", HAND)
    real = write_real(tmp_path / "real.jsonl", [1, 1, 2, 4])
    m = simulator_measures(out, str(real), embed_model="none", seed=3, n_boot=500)
    ci = m["intervals"]
    # self-ended: s1 and s4 of 4 sessions
    assert m["self_ended"] == 0.5 == ci["self_ended"]["value"] and ci["self_ended"]["n"] == 4
    # turns 2, 1, 3, 2: mean 2
    assert ci["turns_mean"]["value"] == 2.0 == m["turns"]["mean"]
    # simulator {1: .25, 2: .5, 3: .25}, real {1: .5, 2: .25, 4: .25}; CDFs at 1..4:
    # .25 .75 1 1 against .5 .75 .75 1: KS .25; TV (.25 + .25 + .25 + .25) / 2 = .5
    assert m["turns_distance"]["ks"] == 0.25 == ci["ks"]["value"] and ci["ks"]["sizes"] == [4, 4]
    assert m["turns_distance"]["tv"] == 0.5 == ci["tv"]["value"]
    ra = m["role_adherence"]
    # kept questions 2 + (1 + the repeat that ended s2) + 3 + 2 = 9; degenerate: the repeat and "ok"
    assert ra["questions"] == 9 and ra["by_reason"] == {"repeated_question": 1, "too_short": 1}
    assert ra["share"] == 2 / 9 == ra["degenerate_after"]["value"]
    # drawn: 9 + 3 redraws = 12; before redraws: 2 + 3 degenerate of 12
    assert ra["drawn"] == 12 and ra["redraws"] == {"echoed_answer": 2, "too_short": 1}
    assert ra["degenerate_before"]["value"] == 5 / 12 and ra["degenerate_before"]["n"] == 4
    # first-question bigrams: 5 + 4 + 4 + 5 = 18, of which how-do, do-i, i-sort, sort-a twice: 14 distinct
    assert m["first_questions"]["distinct_2"] == 14 / 18 == ci["distinct_2"]["value"] and ci["distinct_2"]["n"] == 4
    shares = [ci["self_ended"], ci["turns_mean"], ci["distinct_2"], ra["degenerate_before"], ra["degenerate_after"]]
    for c in shares:
        assert c["low"] <= c["value"] <= c["high"] and c["n_boot"] == 500
    for c in (ci["ks"], ci["tv"]):  # a distance resampled is biased upward: only its range is sure
        assert 0.0 <= c["low"] <= c["high"] <= 1.0
    again = simulator_measures(out, str(real), embed_model="none", seed=3, n_boot=500)
    assert again["intervals"] == ci and again["role_adherence"] == ra  # the same seed, the same intervals
    other = simulator_measures(out, str(real), embed_model="none", seed=4, n_boot=500)
    assert other["intervals"] != ci
    json.dumps(m)


def test_identical_sessions_give_intervals_of_width_zero(tmp_path):
    same = [session(i, ["How do I sort a list", "Can you sort it in reverse"], "stop_marker") for i in range(5)]
    out = write_sessions(tmp_path / "synth.jsonl", same)
    real = write_real(tmp_path / "real.jsonl", [2, 2, 2])
    m = simulator_measures(out, str(real), embed_model="none", n_boot=200)
    ci, ra = m["intervals"], m["role_adherence"]
    assert (ci["self_ended"]["low"], ci["self_ended"]["high"]) == (1.0, 1.0)
    assert (ci["turns_mean"]["low"], ci["turns_mean"]["high"]) == (2.0, 2.0)
    assert (ci["ks"]["value"], ci["ks"]["low"], ci["ks"]["high"]) == (0.0, 0.0, 0.0)
    assert (ci["tv"]["low"], ci["tv"]["high"]) == (0.0, 0.0)
    assert ci["distinct_2"]["low"] == ci["distinct_2"]["high"] == ci["distinct_2"]["value"] == 0.2
    # no meta.redraws (an older file): nothing redrawn, so before == after == 0
    assert ra["redraws"] == {} and ra["drawn"] == ra["questions"] == 10
    assert ra["degenerate_before"] == ra["degenerate_after"] and ra["degenerate_after"]["high"] == 0.0


def test_redraws_counted_in_the_manifest_are_reported_beside(tmp_path):
    out = write_sessions(tmp_path / "synth.jsonl", HAND)
    manifest = {"stage": "synthesize", "counts": {"redraw:too_short": 4, "redraw:echoed_answer": 2, "sessions": 4}}
    (tmp_path / "synth.jsonl.manifest.json").write_text(json.dumps(manifest))
    m = simulator_measures(out, str(write_real(tmp_path / "real.jsonl", [2])), embed_model="none", n_boot=50)
    assert m["role_adherence"]["redraws_run"] == {"echoed_answer": 2, "too_short": 4}
    assert m["role_adherence"]["redraws"] == {"echoed_answer": 2, "too_short": 1}  # the written sessions'
