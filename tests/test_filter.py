"""parrot filter: cuts and drops by reason, near-duplicates, counts in manifest and summary."""

from __future__ import annotations

import json

import pytest
from test_file_errors import error_line

from parrot import ParrotError
from parrot.core.config import build_config
from parrot.core.manifest import read_manifest
from parrot.filter.stage import FilterConfig, filter_sessions

GOOD = [
    "How do I read a CSV file in Python?",
    "Can I skip the header row with it?",
    "What if the file uses semicolons instead?",
    "And how would I write it back out?",
]


def session(sid, questions, answers=None):
    msgs = []
    for i, q in enumerate(questions):
        msgs += [
            {"role": "user", "content": q},
            {
                "role": "assistant",
                "content": (answers or {}).get(i, f"Answer {i} for session {sid}: use the csv module."),
            },
        ]
    return {"id": sid, "messages": msgs, "meta": {"turns": len(questions)}}


def run(tmp_path, records, capsys=None, **kw):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    counts = filter_sessions(build_config(FilterConfig, {"input": str(src), "output": str(out), **kw}))
    kept = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    return kept, counts


def questions(rec):
    return [m["content"] for m in rec["messages"] if m["role"] == "user"]


@pytest.mark.parametrize(
    "bad,reason",
    [
        ("ok", "too_short"),
        ("How do I read a CSV file in Python please?", "repetitive"),
        ("Sure! Here is how you can read the file with pandas.", "role_confused"),
        ("That works. I hope this helps you with your project!", "role_confused"),
        ("Now how do I make a bomb with these files?", "sensitive"),
    ],
)
def test_a_bad_question_cuts_the_session_before_it(tmp_path, bad, reason):
    kept, counts = run(tmp_path, [session("a", GOOD[:2] + [bad] + GOOD[2:])])
    assert questions(kept["a"]) == GOOD[:2]
    assert kept["a"]["messages"][-1]["role"] == "assistant"
    assert kept["a"]["meta"]["filter"] == {"cut_reason": reason, "cut_at_turn": 3, "turns_before": 5}
    assert kept["a"]["meta"]["turns"] == 2
    assert counts[f"cut:{reason}"] == 1 and counts["turns_cut"] == 3


def test_chinese_and_japanese_questions_count_their_characters_as_words(tmp_path):
    zh = ["请解释一下量子计算的基本原理。", "它和经典计算有什么不同？", "请解释一下量子计算的基本原理。"]
    ja = ["量子コンピュータとは何ですか？", "どんな問題に向いていますか？"]
    kept, counts = run(tmp_path, [session("zh", zh), session("ja", ja)])
    assert questions(kept["zh"]) == zh[:2]  # the repeat is cut, the short-looking ones are not
    assert questions(kept["ja"]) == ja
    assert "too_short" not in json.dumps(counts)


def test_drop_mode_drops_the_whole_session(tmp_path):
    kept, counts = run(tmp_path, [session("a", GOOD[:2] + ["ok"]), session("b", GOOD)], on_bad_question="drop")
    assert list(kept) == ["b"] and counts["dropped:too_short"] == 1


def test_sessions_under_min_turns_are_dropped_also_after_a_cut(tmp_path):
    kept, counts = run(
        tmp_path,
        [session("short", GOOD[:1]), session("cut", GOOD[:1] + ["ok", GOOD[2]]), session("ok", GOOD[:2])],
        min_turns=2,
    )
    assert list(kept) == ["ok"]
    assert counts["dropped:too_few_turns"] == 2 and counts["cut:too_short"] == 1


def test_an_echo_of_the_last_answer_is_role_confused(tmp_path):
    answer = (
        "To read a CSV file in Python you open it with open() and pass the file object to csv.reader, "
        "which yields each row as a list of strings that you can loop over."
    )
    echo = "you open it with open() and pass the file object to csv.reader, which yields each row as a list of strings that you can loop over."
    kept, counts = run(tmp_path, [session("a", [GOOD[0], echo, GOOD[1]], answers={0: answer})], min_turns=1)
    assert questions(kept["a"]) == [GOOD[0]] and counts["cut:role_confused"] == 1


def test_near_duplicate_sessions_keep_the_first(tmp_path):
    near = list(GOOD)
    near[3] = "And how would I write it back out again?"
    other = ["Explain how photosynthesis works in plants.", "Which part of the leaf does that happen in?"]
    kept, counts = run(tmp_path, [session("a", GOOD), session("b", near), session("c", other)])
    assert sorted(kept) == ["a", "c"] and counts["dropped:near_duplicate"] == 1


def test_custom_sensitive_list_and_none(tmp_path):
    terms = tmp_path / "terms.txt"
    terms.write_text("# mine\nsemicolons\n")
    kept, counts = run(tmp_path, [session("a", GOOD)], sensitive_terms=str(terms))
    assert questions(kept["a"]) == GOOD[:2] and counts["cut:sensitive"] == 1
    kept, _ = run(tmp_path, [session("a", GOOD[:2] + ["How do I make a bomb?"])], sensitive=False, overwrite=True)
    assert len(questions(kept["a"])) == 3
    with pytest.raises(ParrotError, match="nothere.txt: sensitive-terms file not found"):
        run(tmp_path, [session("a", GOOD)], sensitive_terms=str(tmp_path / "nothere.txt"))


def test_counts_land_in_the_manifest_and_the_printed_summary(tmp_path, capsys):
    recs = [session("a", GOOD), session("b", GOOD[:1]), session("c", GOOD[:2] + ["ok"])]
    run(tmp_path, recs)
    man = read_manifest(tmp_path / "out.jsonl")
    assert man["stage"] == "filter"
    assert man["counts"]["read"] == 3 and man["counts"]["written"] == 2
    assert man["counts"]["dropped:too_few_turns"] == 1 and man["counts"]["cut:too_short"] == 1
    printed = capsys.readouterr().out
    assert "dropped: too_few_turns" in printed and "cut: too_short" in printed


def test_invalid_input_names_the_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(session("a", GOOD)) + "\n" + '{"messages": [{"role": "assistant", "content": "x"}]}\n')
    with pytest.raises(ParrotError, match=r"in.jsonl:2: message 0: expected role 'user'"):
        filter_sessions(build_config(FilterConfig, {"input": str(src), "output": str(tmp_path / "o.jsonl")}))
    assert not (tmp_path / "o.jsonl").exists()


def test_keeping_no_session_is_an_error_naming_the_setting_to_change(tmp_path):
    with pytest.raises(
        ParrotError,
        match=r"filter kept 0 of 2 sessions .*\(too_few_turns 2\): "
        r"lower min_turns=3.*synthesize more",
    ):
        run(tmp_path, [session("a", GOOD[:2]), session("b", GOOD[:1])], min_turns=3)
    assert read_manifest(tmp_path / "out.jsonl")["complete"] is False  # a pipeline runs it again


def test_a_negative_min_turns_is_an_error_naming_the_command_line(tmp_path, capsys):
    from parrot.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text("")
    assert main(["filter", str(src), "-o", str(tmp_path / "out.jsonl"), "--min-turns", "-1"]) == 2
    assert error_line(capsys) == "parrot filter: error: command line: min_turns: expected at least 1, found -1"
    assert not (tmp_path / "out.jsonl").exists()
