"""Benchmark data: MT-Bench from the installed data copy, MT-Bench++ assembly, question files."""

import json

import pytest

from parrot import ParrotError
from parrot.evaluate.bench import (
    FOLLOWUP_KINDS,
    category_temperature,
    default_followups_path,
    load_bench,
    read_followups,
)

KINDS = list(FOLLOWUP_KINDS)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def followups(qids):
    return [
        {"question_id": q, "turns": [f"follow-up {i} of {q}: make that shorter" for i in range(6)], "kinds": KINDS}
        for q in qids
    ]


def test_mt_bench_has_80_two_turn_questions_and_gpt4_references_for_math_reasoning_coding():
    bench = load_bench("mt-bench")
    assert len(bench.questions) == 80
    assert all(len(q["turns"]) == 2 for q in bench.questions)
    need = [q["question_id"] for q in bench.questions if q["category"] in ("math", "reasoning", "coding")]
    assert len(need) == 30
    assert all(bench.reference(qid, 1) and bench.reference(qid, 2) for qid in need)
    assert bench.reference(81, 1) is None  # writing: no reference


def test_bench_names_accept_dashes_and_underscores():
    assert load_bench("mt_bench").name == load_bench("MT-Bench").name == "mt-bench"


def test_mt_bench_pp_is_mt_bench_turns_1_2_plus_six_followups(tmp_path):
    fpath = write_jsonl(tmp_path / "f.jsonl", followups([81, 111]))
    mt = load_bench("mt-bench").by_id()
    bench = load_bench("mt-bench-pp", followups=fpath)
    assert [q["question_id"] for q in bench.questions] == [81, 111]
    q = bench.questions[1]
    assert q["turns"][:2] == mt[111]["turns"]
    assert q["turns"][2:] == [f"follow-up {i} of 111: make that shorter" for i in range(6)]
    assert q["category"] == "math" and q["reference"] == mt[111]["reference"]
    assert set(q) == {"question_id", "category", "turns", "reference"}
    # turns 1-2 keep the GPT-4 references; the follow-ups have none
    assert bench.reference(111, 2) == load_bench("mt-bench").reference(111, 2)
    assert bench.reference(111, 3) is None


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"turns": ["a"] * 5, "kinds": KINDS[:5]}, "6 non-empty strings"),
        ({"turns": ["a"] * 6, "kinds": ["refine"] * 5 + ["rewrite"]}, "kinds"),
        ({"question_id": 9999}, "not an MT-Bench question"),
    ],
)
def test_bad_followups_line_is_an_error_naming_file_and_line(tmp_path, bad, message):
    good = followups([81])[0]
    path = write_jsonl(tmp_path / "f.jsonl", [good, {**followups([82])[0], **bad}])
    with pytest.raises(ParrotError, match=rf"f\.jsonl:2: .*{message}"):
        load_bench("mt-bench-pp", followups=path)


def test_packaged_followups_are_valid_mt_bench_pp_sessions():
    path = default_followups_path()
    if not path.is_file():
        pytest.skip(f"{path} not written yet")
    ids = {q["question_id"] for q in load_bench("mt-bench").questions}
    rows = read_followups(path, ids)
    assert rows and all(len(t) == 6 for t in rows.values())


def test_question_file_bench_takes_any_number_of_turns_and_its_own_references(tmp_path):
    path = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {
                "question_id": "a",
                "category": "math",
                "turns": ["1+1?", "times 3?", "minus 1?"],
                "reference": ["2", "6", "5"],
            },
            {"question_id": "b", "turns": ["hi"]},
        ],
    )
    bench = load_bench(str(path))
    assert [len(q["turns"]) for q in bench.questions] == [3, 1]
    assert bench.reference("a", 3) == "5" and bench.reference("b", 1) is None
    assert bench.questions[1]["category"] == "unknown"


def test_unknown_bench_is_an_error():
    with pytest.raises(ParrotError, match="mt-bench, mt-bench-pp, verified-mt or a question file"):
        load_bench("no-such-bench")


def test_select_limits_and_picks_ids_in_file_order():
    bench = load_bench("mt-bench")
    assert [q["question_id"] for q in bench.select(limit=2).questions] == [81, 82]
    assert [q["question_id"] for q in bench.select(question_ids=["130", "101"]).questions] == [101, 130]
    with pytest.raises(ParrotError, match="no question with id 7"):
        bench.select(question_ids=["7"])


def test_fastchat_category_temperatures():
    assert [
        category_temperature(c)
        for c in ("writing", "roleplay", "math", "coding", "reasoning", "extraction", "stem", "humanities", "other")
    ] == [0.7, 0.7, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.7]
