"""Simulator measures on real files: synthesize runs against the scriptable HTTP server (a
simulator that stops, one that degenerates, one seeded by topics), the real filter stage on
their output, and hand-written real sessions."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from synth_helpers import Script, make_cfg, stop_after, write_seeds

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


def degenerating(k, body):
    """Question 2 is fine, 3 answers instead of asking, 4 is too short, 5 repeats question 2."""
    return {
        2: "Can you explain that part in more detail?",
        3: "Sure, here is the answer you wanted: it is 42.",
        4: "ok",
    }.get(k, "Can you explain that part in more detail?")


@pytest.mark.parametrize("role_confusion", [True, False])
def test_degenerate_questions_from_end_reasons_and_the_filters_rules(tmp_path, fault_server, role_confusion):
    fault_server.responder = Script(ask=degenerating)
    out = tmp_path / "synth.jsonl"
    seeds = write_seeds(tmp_path / "s.jsonl")
    synthesize(make_cfg(out, fault_server.base_url, seeds=str(seeds), num_sessions=3, max_turns=6))
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
