"""``parrot eval report``: means per turn / category / overall, -1 excluded, runs, models, figure."""

import json

import pytest
from golden import assert_golden

from parrot import ParrotError, cli
from parrot.evaluate.scores import ReportConfig, aggregate, latest_judgments, report

CATS = {"81": "writing", "111": "math"}


def rec(qid, turn, score, model="m", judge=("gpt-4", "single-v1")):
    return {
        "question_id": qid,
        "model": model,
        "judge": list(judge),
        "user_prompt": "",
        "judgment": f"[[{score}]]",
        "score": score,
        "turn": turn,
        "tstamp": 0,
    }


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_means_per_turn_category_and_overall_exclude_minus_one_and_count_it():
    records = [rec(81, 1, 8), rec(81, 2, 6), rec(111, 1, 4), rec(111, 2, -1), rec(111, 3, 3)]
    m = aggregate([{"source": "J", "records": records}], CATS)["m"]
    assert m["overall"]["median"] == pytest.approx((8 + 6 + 4 + 3) / 4)
    assert {t: s["median"] for t, s in m["by_turn"].items()} == {1: 6.0, 2: 6.0, 3: 3.0}
    assert {c: s["median"] for c, s in m["by_category"].items()} == {"writing": 7.0, "math": 3.5}
    assert (m["judged"], m["unparsable"]) == (4, 1)
    assert m["unparsable_by_turn"] == {1: 0, 2: 1, 3: 0}


def test_turns_whose_judgments_are_all_minus_one_are_shown_and_counted(tmp_path):
    j = write(tmp_path / "j.jsonl", [rec(81, 1, 6), rec(81, 2, -1), rec(111, 2, -1)])
    out = tmp_path / "rep"
    summary = report(ReportConfig(judgments=[j], output=str(out)))
    assert summary["models"]["m"]["by_turn"][2] is None
    md = (out / "report.md").read_text()
    assert "| m | 6.00 | – |" in md and "| m: -1 excluded | 0 | 2 |" in md


def test_a_later_scored_judgment_replaces_an_earlier_minus_one_but_not_the_reverse():
    kept = latest_judgments([rec(81, 1, -1), rec(81, 1, 7), rec(81, 1, -1), rec(81, 2, -1)])
    assert sorted((r["turn"], r["score"]) for r in kept) == [(1, 7), (2, -1)]


def test_several_judge_runs_give_median_and_spread():
    runs = [{"source": f"J{i}", "records": [rec(81, 1, s), rec(111, 1, 5)]} for i, s in enumerate((9, 5, 7))]
    m = aggregate(runs, CATS)["m"]
    # run means: (9+5)/2=7, (5+5)/2=5, (7+5)/2=6
    assert m["overall"] == {"median": 6.0, "min": 5.0, "max": 7.0, "runs": 3}
    assert m["by_category"]["writing"] == {"median": 7.0, "min": 5.0, "max": 9.0, "runs": 3}
    assert len(m["runs"]) == 3


def test_report_dir_has_tables_json_figure_and_manifest(tmp_path):
    a = write(
        tmp_path / "a.jsonl",
        [rec(81, t, 9 - t, "parrot") for t in range(1, 9)] + [rec(81, t, 7 - t // 2, "vicuna") for t in range(1, 9)],
    )
    b = write(tmp_path / "b.jsonl", [rec(81, t, 8 - t, "parrot") for t in range(1, 9)])
    out = tmp_path / "rep"
    summary = report(ReportConfig(judgments=[a, b], output=str(out)))
    assert set(summary["models"]) == {"parrot", "vicuna"}
    md = (out / "report.md").read_text()
    assert "| parrot | 7.50 [7.00–8.00] |" in md and "turn 8" in md and "writing" in md
    assert json.loads((out / "report.json").read_text())["models"]["vicuna"]["by_turn"]["8"]["median"] == 3.0
    assert (out / "score_by_turn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "report.manifest.json").read_text())
    assert manifest["stage"] == "eval report" and len(manifest["inputs"]) == 2


def test_cli_without_output_prints_the_tables(tmp_path, monkeypatch, capsys):
    j = write(tmp_path / "j.jsonl", [rec(81, 1, 8), rec(81, 2, -1)])
    monkeypatch.setattr(cli, "COMMANDS", [c for c in cli.COMMANDS if c.name.startswith("eval ")])
    assert cli.main(["eval", "report", j]) == 0
    printed = capsys.readouterr().out
    assert "## Score by turn" in printed and "| m | 8.00 | 1 | 1 | 1 |" in printed


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"score": None}, "score: expected a number"),
        ({"turn": "1st"}, "turn: expected a turn number from 1, found '1st'"),
    ],
)
def test_a_malformed_score_or_turn_is_an_error_naming_the_line(tmp_path, bad, message):
    j = write(tmp_path / "j.jsonl", [rec(81, 1, 8), {**rec(81, 2, 7), **bad}])
    with pytest.raises(ParrotError, match=rf"j\.jsonl:2: {message}"):
        report(ReportConfig(judgments=[j]))


def test_a_file_that_is_not_judgments_is_an_error_naming_the_line(tmp_path, monkeypatch, capsys):
    j = write(tmp_path / "j.jsonl", [rec(81, 1, 8), {"question_id": 1, "answer": "x"}])
    monkeypatch.setattr(cli, "COMMANDS", [c for c in cli.COMMANDS if c.name.startswith("eval ")])
    assert cli.main(["eval", "report", j]) == 2
    assert "j.jsonl:2: expected FastChat's single-judgment schema" in capsys.readouterr().err


def test_a_judge_that_gives_every_turn_the_same_score_is_called_out(tmp_path):
    same = write(
        tmp_path / "same.jsonl", [rec(81, t, 5, model) for t in (1, 2) for model in ("a", "b")] + [rec(111, 1, -1)]
    )
    out = tmp_path / "rep"
    summary = report(ReportConfig(judgments=[same], output=str(out)))
    assert summary["warnings"] == [
        "The judge gave all 4 judged turns the same score (5): it does not tell the answers apart, so these "
        "scores rank nothing. Judge again with a stronger model (`parrot eval judge --judge SPEC`)."
    ]
    assert (out / "report.md").read_text().startswith("# Evaluation report\n\n> **Warning:** The judge gave all 4")
    varied = write(tmp_path / "varied.jsonl", [rec(81, 1, 5), rec(81, 2, 6)])
    assert report(ReportConfig(judgments=[varied], output=str(tmp_path / "rep2")))["warnings"] == []


def test_the_report_is_the_golden_one(tmp_path):
    """The same judgments make the same report, to the byte but for its folder (issue 25)."""
    a = write(
        tmp_path / "a.jsonl",
        [rec(81, t, 9 - t, "parrot") for t in range(1, 9)]
        + [rec(81, t, 7 - t // 2, "vicuna") for t in range(1, 9)]
        + [rec(111, 2, -1, "vicuna")],
    )
    b = write(tmp_path / "b.jsonl", [rec(81, t, 8 - t, "parrot") for t in range(1, 9)])
    report(ReportConfig(judgments=[a, b], output=str(tmp_path / "rep")))
    for name in ("report.md", "report.json"):
        assert_golden(f"eval_{name}", tmp_path / "rep" / name, tmp_path)
