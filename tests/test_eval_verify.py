"""``parrot eval verify``: benches and responses read as they are (IFEval, Multi-IF, Parrot's own),
every instruction checked strict and loose, measures by turn, retention and kind, bad input named."""

import csv
import json

import pytest
from test_eval_answer import answer_cfg

from parrot import ParrotError
from parrot.cli import main
from parrot.evaluate.answer import answer
from parrot.evaluate.verified import read_bench
from parrot.evaluate.verify import VerifyConfig, measures, verify_answers


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


IFEVAL = [
    {
        "key": 1,
        "prompt": "Describe tea without commas.",
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    },
    {
        "key": 2,
        "prompt": "Write about rain in lowercase and end with 'Is there anything else I can help with?'.",
        "instruction_id_list": ["change_case:english_lowercase", "startend:end_checker"],
        # the Hugging Face copy fills every kwarg with null: those are not kwargs
        "kwargs": [{"end_phrase": None}, {"end_phrase": "Is there anything else I can help with?", "num_words": None}],
    },
]
RESPONSES = [
    {"prompt": IFEVAL[0]["prompt"], "response": "Tea is a drink made from leaves and hot water."},
    {
        "prompt": IFEVAL[1]["prompt"],
        "response": "Sure! Here it is:\nthe rain falls softly on the quiet town at night and the streets shine.\n"
        "Is there anything else I can help with?",
    },
]


def test_an_ifeval_responses_file_is_scored_strict_and_loose_with_ifevals_field_names(tmp_path):
    bench = write_jsonl(tmp_path / "input_data.jsonl", IFEVAL)
    responses = write_jsonl(tmp_path / "mymodel.jsonl", RESPONSES)
    out = tmp_path / "verified.jsonl"
    assert main(["eval", "verify", "--bench", str(bench), str(responses), "-o", str(out)]) == 0
    first, second = read(out)
    assert first["model"] == "mymodel" and first["key"] == "1" and first["turn"] == 1
    assert first["instruction_id_list"] == ["punctuation:no_comma"] and first["response"] == RESPONSES[0]["response"]
    assert first["strict"] == {"follow_instruction_list": [True], "follow_all_instructions": True}
    # "Sure! Here it is:" is not lowercase: strict fails it; loose drops the first line and passes
    assert second["strict"]["follow_instruction_list"] == [False, True]
    assert second["loose"] == {"follow_instruction_list": [True, True], "follow_all_instructions": True}
    assert second["kwargs"] == [{}, {"end_phrase": "Is there anything else I can help with?"}]
    manifest = json.loads((tmp_path / "verified.jsonl.manifest.json").read_text())
    assert manifest["complete"] and manifest["counts"]["instructions"] == 3
    assert manifest["overall"]["mymodel"]["instruction"]["strict"]["mean"] == pytest.approx(2 / 3, abs=1e-4)
    assert manifest["overall"]["mymodel"]["instruction"]["loose"]["mean"] == 1.0


def test_an_empty_response_follows_nothing_even_an_instruction_it_cannot_break(tmp_path):
    bench = write_jsonl(tmp_path / "b.jsonl", IFEVAL[:1])
    responses = write_jsonl(tmp_path / "m.jsonl", [{"prompt": IFEVAL[0]["prompt"], "response": "  "}])
    out = tmp_path / "v.jsonl"
    verify_answers(VerifyConfig(answers=[str(responses)], output=str(out), bench=str(bench)))
    [rec] = read(out)
    assert rec["strict"]["follow_instruction_list"] == [False] and rec["loose"]["follow_instruction_list"] == [False]


def multi_if_rows():
    def turn(content, ids, kwargs):
        return (
            json.dumps({"role": "user", "content": content}),
            json.dumps(ids),
            json.dumps([json.dumps(k) for k in kwargs]),
        )

    rows = []
    for key, (t1, t2, t3) in {
        "1001:1:en": (
            turn("Tell me about owls no commas", ["punctuation:no_comma"], [{}]),
            turn("Now, add a title", ["punctuation:no_comma", "detectable_format:title"], [{}, {}]),
            turn("Shorter <<Owls>>", ["punctuation:no_comma", "detectable_format:title"], [{}, {}]),
        ),
        "1002:1:en": (
            turn("Name a river", [], []),
            turn("Say more about it", ["punctuation:no_comma"], [{}]),
            ("", "", ""),  # a conversation of two turns
        ),
    }.items():
        row = {"key": key, "language": "English"}
        for k, (p, i, kw) in enumerate((t1, t2, t3), 1):
            row |= {f"turn_{k}_prompt": p, f"turn_{k}_instruction_id_list": i, f"turn_{k}_kwargs": kw}
        rows.append(row)
    return rows


def test_a_multi_if_csv_loads_is_answered_and_scored_by_turn(fault_server, tmp_path):
    rows = multi_if_rows()
    path = tmp_path / "multi_if.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    items = read_bench(str(path))
    assert [len(it.turns) for it in items] == [3, 2]
    # cumulative lists: the no-comma rule of turn 1 is still the one given at turn 1
    assert [(a.id, a.since) for a in items[0].turns[2].instructions] == [
        ("punctuation:no_comma", 1),
        ("detectable_format:title", 2),
    ]
    answers = tmp_path / "answers.jsonl"
    answer(answer_cfg(fault_server, answers, bench=str(path), model_id="echo"))  # replies "echo: <prompt>"
    assert [r["choices"][0]["turns"][-1] for r in read(answers)] == [
        "echo: Shorter <<Owls>>",
        "echo: Say more about it",
    ]
    out = tmp_path / "verified.jsonl"
    verify_answers(VerifyConfig(answers=[str(answers)], output=str(out), bench=str(path)))
    verdicts = {(r["key"], r["turn"]): r["strict"]["follow_instruction_list"] for r in read(out)}
    assert verdicts == {
        ("1001:1:en", 1): [True],
        ("1001:1:en", 2): [False, False],  # "echo: Now, add a title": a comma, no <<title>>
        ("1001:1:en", 3): [True, True],
        ("1002:1:en", 1): [],
        ("1002:1:en", 2): [True],
    }
    summary = measures(read(out), n_boot=200)["echo"]
    assert summary["by_turn"]["1"]["instruction"]["strict"]["mean"] == 1.0
    assert summary["by_turn"]["2"]["instruction"]["strict"]["mean"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["by_turn"]["2"]["conversation"]["strict"]["mean"] == 0.5
    # retention, by turns since given: 0 ago, 2 of 3 (the title asked at turn 2 is missing); 2 ago, the
    # no-comma rule of turn 1 kept at turn 3
    assert summary["retention"]["0"]["strict"]["items"] == 3
    assert summary["retention"]["0"]["strict"]["mean"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["retention"]["2"]["strict"]["mean"] == 1.0 and summary["retention"]["2"]["strict"]["items"] == 1
    assert summary["retention"]["1"]["strict"]["items"] == 2  # no-comma at turn 2 (failed), title at turn 3 (kept)
    assert summary["by_kind"]["punctuation"]["strict"]["items"] == 4


@pytest.mark.parametrize(
    "record, message",
    [
        (
            {"key": 7, "prompt": "x", "instruction_id_list": ["punctuation:no_semicolons"], "kwargs": [{}]},
            "b.jsonl:2: id '7': unknown instruction id 'punctuation:no_semicolons'",
        ),
        (
            {"key": 7, "prompt": "x", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{"num_words": 3}]},
            "b.jsonl:2: id '7': ",
        ),
        (
            {"key": 7, "prompt": "x", "instruction_id_list": ["startend:end_checker"], "kwargs": [{}]},
            "b.jsonl:2: id '7': ",
        ),
    ],
    ids=["unknown id", "extra kwarg", "missing kwarg"],
)
def test_a_bad_bench_names_file_line_and_id_and_writes_nothing(tmp_path, record, message):
    bench = write_jsonl(tmp_path / "b.jsonl", [IFEVAL[0], record])
    responses = write_jsonl(tmp_path / "m.jsonl", RESPONSES[:1])
    out = tmp_path / "v.jsonl"
    with pytest.raises(ParrotError) as e:
        verify_answers(VerifyConfig(answers=[str(responses)], output=str(out), bench=str(bench)))
    assert message in str(e.value)
    assert not out.exists() and not (tmp_path / "v.jsonl.manifest.json").exists()


def test_a_response_that_matches_no_item_is_an_error_naming_it(tmp_path):
    bench = write_jsonl(tmp_path / "b.jsonl", IFEVAL)
    responses = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"question_id": 1, "model_id": "a", "choices": [{"turns": ["fine"]}]},
            {"question_id": 99, "model_id": "a", "choices": [{"turns": ["lost"]}]},
        ],
    )
    out = tmp_path / "v.jsonl"
    with pytest.raises(ParrotError, match=r"m\.jsonl:2: id '99' matches no item of the bench"):
        verify_answers(VerifyConfig(answers=[str(responses)], output=str(out), bench=str(bench)))
    assert not out.exists()


def test_the_packaged_set_is_a_bench_every_answer_file_reads(tmp_path):
    items = read_bench("verified-mt")
    assert len(items) >= 150 and all(3 <= len(it.turns) <= 8 for it in items)
    first = items[0]
    responses = write_jsonl(
        tmp_path / "a.jsonl",
        [{"question_id": first.key, "model_id": "m", "choices": [{"turns": ["ok"] * len(first.turns)}]}],
    )
    out = tmp_path / "v.jsonl"
    counts = verify_answers(VerifyConfig(answers=[str(responses)], output=str(out)))
    assert counts["turns"] == len(first.turns) and counts["unanswered"] == len(items) - 1
    assert {r["key"] for r in read(out)} == {first.key}
