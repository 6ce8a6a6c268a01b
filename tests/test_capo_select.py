"""CaPO turn selection: detector, per-session and total caps, the LLM verifier, the CLI spelling."""

import json

import pytest

from parrot.capo import SelectConfig, candidate_turns, capo_select
from parrot.capo.prompts import load_prompt, render
from parrot.capo.select import history_text, parse_verdict
from parrot.core.config import build_config
from parrot.core.manifest import read_manifest


def turns(*pairs):
    out = []
    for q, a in pairs:
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return out


LONG = turns(
    ("Name two rivers in France.", "The Seine and the Loire."),
    ("Which of them is longer?", "The Loire."),
    ("How long is the second one?", "About 1,006 km."),
    ("What is the capital of Peru?", "Lima."),
    ("Why?", "It was founded there by the Spanish in 1535."),
    ("Translate it into French.", "Elle a été fondée là par les Espagnols en 1535."),
)


def write(tmp_path, sessions):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"id": i, "messages": m}) + "\n" for i, m in sessions))
    return path


def select(tmp_path, sessions, **settings):
    cfg = build_config(
        SelectConfig,
        {
            "dialogues": str(write(tmp_path, sessions)),
            "output": str(tmp_path / "sel.jsonl"),
            "overwrite": True,
            **settings,
        },
    )
    counts = capo_select(cfg)
    return counts, [json.loads(x) for x in (tmp_path / "sel.jsonl").read_text().splitlines()]


def test_detector_flags_only_dependent_turns_from_the_second_on():
    d = {
        "id": "x",
        "messages": turns(
            ("Make it shorter.", "Sure."), ("Write a poem about rain.", "Rain..."), ("Make it rhyme.", "Rain, again...")
        ),
    }
    [t] = candidate_turns(d)
    assert (t["turn"], t["question"], t["answer"]) == (3, "Make it rhyme.", "Rain, again...")
    assert "pronoun:it" in t["reasons"] and t["prompt"] == d["messages"][:5]


def test_unanswered_last_question_counts_only_when_chosen_is_regenerated():
    d = {
        "id": "x",
        "messages": turns(("Write a poem about rain.", "Rain...")) + [{"role": "user", "content": "Make it rhyme."}],
    }
    assert candidate_turns(d) == []
    [t] = candidate_turns(d, need_reply=False)
    assert t["answer"] is None and t["turn"] == 2


def test_selection_file_has_reasons_and_the_per_session_cap_is_seeded(tmp_path):
    counts, sel = select(tmp_path, [("a", LONG)], max_per_session=0)
    assert [r["turn"] for r in sel] == [2, 3, 5, 6] and counts["detector_hits"] == 4
    assert all(r["reasons"] and r["source_id"] == "a" and r["id"] == f"a-t{r['turn']}" for r in sel)
    _, capped = select(tmp_path, [("a", LONG)], max_per_session=2, seed=7)
    _, again = select(tmp_path, [("a", LONG)], max_per_session=2, seed=7)
    assert len(capped) == 2 and capped == again
    picks = {tuple(r["turn"] for r in select(tmp_path, [("a", LONG)], max_per_session=2, seed=s)[1]) for s in range(8)}
    assert len(picks) > 1  # the seed, not the position, decides which turns fill the cap


def test_a_token_budget_leaves_out_turns_whose_pair_cannot_fit_whatever_the_history(tmp_path, smollm2_tokenizer_dir):
    long_answer = "The Loire is long. " * 60  # ~300 tokens
    sessions = [
        ("a", LONG),
        ("b", turns(("Name two rivers.", "Seine, Loire."), ("How long is the second one?", long_answer))),
    ]
    settings = {"max_per_session": 0, "tokenizer": str(smollm2_tokenizer_dir)}
    counts, sel = select(tmp_path, sessions, max_length=256, **settings)
    assert {r["source_id"] for r in sel} == {"a"} and counts["over_token_budget"] == 1
    # a long history alone never excludes a turn: train-dpo shortens it
    assert [r["turn"] for r in sel] == [2, 3, 5, 6]
    counts, sel = select(tmp_path, sessions, max_length=512, **settings)
    assert counts.get("over_token_budget", 0) == 0 and len(sel) == 5


def test_total_cap_stops_the_selection(tmp_path):
    sessions = [(f"s{i}", LONG) for i in range(5)]
    counts, sel = select(tmp_path, sessions, max_per_session=2, max_turns_total=5)
    assert len(sel) == 5 and [r["source_id"] for r in sel] == ["s0", "s0", "s1", "s1", "s2"]
    assert counts["over_total_cap"] == 1


def test_verifier_sees_the_history_and_its_no_drops_the_turn(tmp_path, fault_server):
    turn3 = render(load_prompt("capo_verify"), question="How long is the second one?", history=history_text(LONG[:5]))
    fault_server.responder = lambda req: (
        "No." if req["messages"][-1]["content"] == turn3 else "YES, it needs the history."
    )
    counts, sel = select(
        tmp_path, [("a", LONG)], max_per_session=0, verifier={"spec": "openai:judge", "base_url": fault_server.base_url}
    )
    assert [r["turn"] for r in sel] == [2, 5, 6] and counts["verifier_rejected"] == 1
    assert sel[0]["verifier"] == {"confirmed": True, "reply": "YES, it needs the history."}
    expected = render(
        load_prompt("capo_verify"),
        question="Which of them is longer?",
        history="User: Name two rivers in France.\nAssistant: The Seine and the Loire.",
    )
    assert [{"role": "user", "content": expected}] in [r["messages"] for r in fault_server.requests]
    assert all(r["temperature"] == 0.0 for r in fault_server.requests)


def test_verifier_walks_on_until_the_cap_is_filled(tmp_path, fault_server):
    fault_server.responder = lambda req: "NO"
    counts, sel = select(
        tmp_path, [("a", LONG)], max_per_session=2, verifier={"spec": "openai:judge", "base_url": fault_server.base_url}
    )
    assert sel == [] and counts["verifier_calls"] == 4 and counts["verifier_rejected"] == 4


def test_verifier_failure_is_recorded_and_the_session_retried_on_resume(tmp_path, fault_server):
    fault_server.responder = lambda req: "YES"
    fault_server.add_faults("500")
    # One request at a time, so the fault reaches session a's first question, not whichever came first.
    verifier = {"spec": "openai:judge", "base_url": fault_server.base_url, "max_retries": 0, "concurrency": 1}
    counts, sel = select(tmp_path, [("a", LONG), ("b", LONG)], max_per_session=1, verifier=verifier)
    assert counts["sessions_failed"] == 1 and [r["source_id"] for r in sel] == ["b"]
    [fail] = [json.loads(x) for x in (tmp_path / "sel.jsonl.failures.jsonl").read_text().splitlines()]
    assert fail["key"] == "a" and fail["reason"] == "verifier_failed"
    # Incomplete, so `parrot capo --resume` selects again rather than reusing the selection.
    assert read_manifest(tmp_path / "sel.jsonl")["complete"] is False
    counts, sel = select(
        tmp_path, [("a", LONG), ("b", LONG)], max_per_session=1, verifier=verifier, overwrite=False, resume=True
    )
    assert sorted(r["source_id"] for r in sel) == ["a", "b"]
    assert read_manifest(tmp_path / "sel.jsonl")["complete"] is True


def test_a_verifier_failure_settled_by_resume_leaves_no_failures_file(tmp_path, fault_server):
    fault_server.responder = lambda req: "YES"
    fault_server.add_faults("500")
    verifier = {"spec": "openai:judge", "base_url": fault_server.base_url, "max_retries": 0, "concurrency": 1}
    select(tmp_path, [("a", LONG), ("b", LONG)], max_per_session=1, verifier=verifier)
    assert (tmp_path / "sel.jsonl.failures.jsonl").exists()
    select(tmp_path, [("a", LONG), ("b", LONG)], max_per_session=1, verifier=verifier, overwrite=False, resume=True)
    assert not (tmp_path / "sel.jsonl.failures.jsonl").exists()


def test_history_is_shortened_to_the_last_exchanges():
    text = history_text(LONG[:11], exchanges=2, chars=10)
    assert text.splitlines() == [
        "[... earlier turns left out ...]",
        "User: What is th [...]",
        "Assistant: Lima.",
        "User: Why?",
        "Assistant: It was fou [...]",
    ]


@pytest.mark.parametrize(
    "reply,verdict", [("YES", True), ("no.", False), ("Answer: Yes", True), ("I cannot tell", None)]
)
def test_verdict_parsing(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_cli_runs_capo_itself_and_capo_select_as_a_subcommand(monkeypatch, tmp_path):
    import parrot.cli as cli

    monkeypatch.setattr(cli, "COMMANDS", [c for c in cli.COMMANDS if c.name.split()[0] == "capo"])
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "capo",
            "--dialogues",
            "d.jsonl",
            "--generator",
            "openai:m",
            "-o",
            "p.jsonl",
            "--strategies",
            "ignore",
            "misunderstand",
        ]
    )
    assert args._command.name == "capo" and args.strategies == ["ignore", "misunderstand"]
    args = parser.parse_args(["capo", "select", "--dialogues", "d.jsonl", "-o", "s.jsonl"])
    assert args._command.name == "capo select" and args.output == "s.jsonl"
    path = write(tmp_path, [("a", LONG)])
    assert (
        cli.main(["capo", "select", "--dialogues", str(path), "-o", str(tmp_path / "s.jsonl"), "max_per_session=1"])
        == 0
    )
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 1


def test_a_repeated_session_id_is_an_error_naming_it(tmp_path):
    from parrot import ParrotError

    with pytest.raises(ParrotError, match="'a' appears more than once"):
        select(tmp_path, [("a", LONG), ("a", LONG)])


def test_several_inputs_are_read_in_order_until_the_total_cap(tmp_path):
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({"id": "synth", "messages": LONG[:4]}) + "\n")
    second = tmp_path / "second.jsonl"
    second.write_text("".join(json.dumps({"id": f"real{i}", "messages": LONG}) + "\n" for i in range(50)))
    cfg = build_config(
        SelectConfig,
        {
            "dialogues": [str(first), str(second)],
            "output": str(tmp_path / "sel.jsonl"),
            "max_per_session": 2,
            "max_turns_total": 5,
        },
    )
    counts = capo_select(cfg)
    sel = [json.loads(x) for x in (tmp_path / "sel.jsonl").read_text().splitlines()]
    assert [r["source_id"] for r in sel] == ["synth", "real0", "real0", "real1", "real1"]
    assert counts["sessions"] == 3  # reading stopped at the cap
    assert read_manifest(tmp_path / "sel.jsonl")["inputs"][1]["path"].endswith("second.jsonl")
