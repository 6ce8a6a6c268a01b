"""``parrot eval judge`` against a judge server on 127.0.0.1 (the fault-injecting fixture)."""

import json
import shutil

import pytest
from eval_helpers import TRICKY, fastchat_messages, import_fastchat_common

from parrot import cli
from parrot.backends import BackendConfig
from parrot.core.outputs import failures_path
from parrot.evaluate.bench import load_bench
from parrot.evaluate.judge import JudgeConfig, judge

SCHEMA = {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"}


def write_answers(path, questions, model="model-a", text=lambda qid, k: f"answer {k} to {qid}"):
    with open(path, "w", encoding="utf-8") as fh:
        for q in questions:
            turns = [text(q["question_id"], k) for k in range(1, len(q["turns"]) + 1)]
            fh.write(
                json.dumps(
                    {
                        "question_id": q["question_id"],
                        "answer_id": "x",
                        "model_id": model,
                        "choices": [{"index": 0, "turns": turns}],
                        "tstamp": 0,
                    }
                )
                + "\n"
            )
    return path


def read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def run_cli(monkeypatch, argv):
    # Only the eval commands: the parser imports every registered module, and this test is
    # about these three.
    monkeypatch.setattr(cli, "COMMANDS", [c for c in cli.COMMANDS if c.name.startswith("eval ")])
    return cli.main(argv)


def judge_cfg(server, answers, out, **kw):
    spec = BackendConfig(
        spec="openai:gpt-4", base_url=server.base_url, max_retries=2, extra={"backoff_base": 0.0, "backoff_max": 0.0}
    )
    return JudgeConfig(answers=[str(answers)], output=str(out), judge=spec, **kw)


def test_cli_judge_sends_exactly_fastchat_prompts_for_mt_bench(fault_server, monkeypatch, tmp_path):
    fault_server.responder = lambda req: "Sound reasoning. Rating: [[7]]"
    monkeypatch.setenv("OPENAI_BASE_URL", fault_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    bench = load_bench("mt-bench")
    # The command names --data-dir ../shared/data; a copy of the installed data stands in.
    data_dir = shutil.copytree(bench.data_dir, tmp_path / "data")
    answers = write_answers(
        tmp_path / "A.jsonl", bench.questions, text=lambda qid, k: f"answer {k} to {qid}: " + TRICKY
    )
    out = tmp_path / "J.jsonl"
    assert (
        run_cli(
            monkeypatch,
            [
                "eval",
                "judge",
                "--bench",
                "mt-bench",
                "--data-dir",
                str(data_dir),
                "--answers",
                str(answers),
                "--judge",
                "openai:gpt-4",
                "-o",
                str(out),
            ],
        )
        == 0
    )

    fastchat = import_fastchat_common()
    expected = []
    for q in bench.questions:
        refs = [bench.reference(q["question_id"], k) for k in (1, 2)]
        turns = [f"answer {k} to {q['question_id']}: " + TRICKY for k in (1, 2)]
        for turn in (1, 2):
            expected.append(json.dumps(fastchat_messages(fastchat, q, turns, turn, refs)[2]))
    sent = [json.dumps(r["messages"]) for r in fault_server.requests]
    assert len(sent) == 160 and sorted(sent) == sorted(expected)
    assert {(r["model"], r["temperature"], r["max_tokens"]) for r in fault_server.requests} == {("gpt-4", 0.0, 2048)}

    records = read(out)
    assert len(records) == 160 and all(set(r) == SCHEMA for r in records)
    assert {r["score"] for r in records} == {7} and {r["model"] for r in records} == {"model-a"}
    names = {(r["question_id"], r["turn"]): r["judge"] for r in records}
    assert names[(81, 1)] == ["gpt-4", "single-v1"]
    assert names[(81, 2)] == ["gpt-4", "single-v1-multi-turn"]
    assert names[(111, 1)] == ["gpt-4", "single-math-v1"]
    assert names[(130, 2)] == ["gpt-4", "single-math-v1-multi-turn"]
    manifest = json.loads((tmp_path / "J.jsonl.manifest.json").read_text())
    assert str(data_dir / "judge_prompts.jsonl") in [i["path"] for i in manifest["inputs"]]
    assert manifest["counts"]["written"] == 160 and manifest["sampling"]["max_tokens"] == 2048


def test_unparsable_judgment_is_asked_again_then_scored_minus_one(fault_server, tmp_path):
    fault_server.responder = lambda req: "I cannot decide, sorry."
    q = load_bench("mt-bench").select(question_ids=["81"]).questions
    out = tmp_path / "J.jsonl"
    counts = judge(
        judge_cfg(
            fault_server, write_answers(tmp_path / "A.jsonl", q), out, question_ids=["81"], turns=[1], parse_retries=2
        )
    )
    assert len(fault_server.requests) == 3  # first try + 2 retries
    [rec] = read(out)
    assert rec["score"] == -1 and rec["judgment"] == "I cannot decide, sorry."
    assert counts["unparsable"] == 1


def test_junk_then_a_rating_keeps_the_rating(fault_server, tmp_path):
    replies = iter(["<junk>", "Rating [x]", "Better now: [[9]]"])
    fault_server.responder = lambda req: next(replies)
    q = load_bench("mt-bench").select(question_ids=["81"]).questions
    out = tmp_path / "J.jsonl"
    judge(
        judge_cfg(
            fault_server, write_answers(tmp_path / "A.jsonl", q), out, question_ids=["81"], turns=[1], parse_retries=5
        )
    )
    [rec] = read(out)
    assert rec["score"] == 9 and len(fault_server.requests) == 3


def test_server_errors_are_retried_and_a_judge_that_gives_up_is_a_failure_not_a_score(fault_server, tmp_path):
    fault_server.responder = lambda req: "[[6]]"
    q = load_bench("mt-bench").select(question_ids=["81"]).questions
    answers = write_answers(tmp_path / "A.jsonl", q)
    out = tmp_path / "J.jsonl"
    fault_server.add_faults("500", "429")  # max_retries=2: the third attempt gets through
    judge(judge_cfg(fault_server, answers, out, question_ids=["81"], turns=[1]))
    assert [r["score"] for r in read(out)] == [6] and len(fault_server.requests) == 3
    fault_server.add_faults("500", "500", "500")  # every attempt fails: the backend gives up
    counts = judge(judge_cfg(fault_server, answers, out, question_ids=["81"], turns=[2], resume=True))
    assert counts["failed"] == 1 and [r["turn"] for r in read(out)] == [1]
    assert read(failures_path(out))[0]["reason"] == "judge_failed"


def test_a_failed_judgment_judged_on_the_next_run_leaves_no_failures_file(fault_server, tmp_path):
    fault_server.responder = lambda req: "[[6]]"
    answers = write_answers(tmp_path / "A.jsonl", load_bench("mt-bench").select(question_ids=["81"]).questions)
    out = tmp_path / "J.jsonl"
    fault_server.add_faults("500", "500", "500")  # every attempt fails
    assert judge(judge_cfg(fault_server, answers, out, question_ids=["81"], turns=[1]))["failed"] == 1
    assert failures_path(out).exists()
    judge(judge_cfg(fault_server, answers, out, question_ids=["81"], resume=True))
    assert sorted(r["turn"] for r in read(out)) == [1, 2] and not failures_path(out).exists()


def test_resume_skips_scored_judgments_and_asks_again_for_minus_one(fault_server, tmp_path):
    q = load_bench("mt-bench").select(question_ids=["81", "82"]).questions
    answers = write_answers(tmp_path / "A.jsonl", q)
    out = tmp_path / "J.jsonl"
    fault_server.responder = lambda req: "no rating" if "answer 2 to 82" in req["messages"][-1]["content"] else "[[5]]"
    judge(judge_cfg(fault_server, answers, out, parse_retries=0))
    assert sorted(r["score"] for r in read(out)) == [-1, 5, 5, 5]
    fault_server.requests.clear()
    fault_server.responder = lambda req: "[[8]]"
    counts = judge(judge_cfg(fault_server, answers, out, parse_retries=0, resume=True))
    assert len(fault_server.requests) == 1 and counts["skipped_done"] == 3 and counts["written"] == 1
    assert "answer 2 to 82" in fault_server.requests[0]["messages"][-1]["content"]
    fault_server.requests.clear()
    judge(judge_cfg(fault_server, answers, out, resume=True))
    assert fault_server.requests == []
    judge(judge_cfg(fault_server, answers, out, overwrite=True))  # start over: every turn again
    assert len(fault_server.requests) == 4 and sorted(r["score"] for r in read(out)) == [8, 8, 8, 8]


def test_mt_bench_pp_gets_one_judgment_per_turn_with_the_conversation_so_far(fault_server, tmp_path):
    fpath = tmp_path / "f.jsonl"
    fpath.write_text(
        json.dumps(
            {
                "question_id": 111,
                "turns": [f"follow-up {i}" for i in range(3, 9)],
                "kinds": ["refine", "extend", "compare", "correct", "reformat", "apply"],
            }
        )
        + "\n"
    )
    bench = load_bench("mt-bench-pp", followups=fpath)
    fault_server.responder = lambda req: "[[4]]"
    out = tmp_path / "J.jsonl"
    judge(
        judge_cfg(
            fault_server,
            write_answers(tmp_path / "A.jsonl", bench.questions),
            out,
            bench="mt-bench-pp",
            followups=str(fpath),
        )
    )
    records = sorted(read(out), key=lambda r: r["turn"])
    assert [r["turn"] for r in records] == list(range(1, 9))
    assert [r["judge"][1] for r in records] == ["single-math-v1", "parrot-nturn-math-v1"] + ["parrot-nturn-v1"] * 6
    last = records[-1]["user_prompt"]
    assert all(f"answer {k} to 111" in last for k in range(1, 9)) and "follow-up 8" in last
    assert "follow-up 8" not in records[-2]["user_prompt"]


def test_answers_of_the_same_model_twice_is_an_error(fault_server, tmp_path):
    from parrot import ParrotError

    q = load_bench("mt-bench").select(limit=1).questions
    a = write_answers(tmp_path / "A.jsonl", q)
    b = write_answers(tmp_path / "B.jsonl", q)
    cfg = judge_cfg(fault_server, a, tmp_path / "J.jsonl")
    cfg.answers = [str(a), str(b)]
    with pytest.raises(ParrotError, match="also answered by"):
        judge(cfg)


def test_string_question_ids_match_and_answers_of_no_question_are_an_error(fault_server, tmp_path):
    from parrot import ParrotError

    fault_server.responder = lambda req: "Rating: [[7]]"
    q = load_bench("mt-bench").select(limit=1).questions
    answers = write_answers(tmp_path / "A.jsonl", [{**x, "question_id": str(x["question_id"])} for x in q])
    counts = judge(judge_cfg(fault_server, answers, tmp_path / "J.jsonl", limit=1))
    assert [r["score"] for r in read(tmp_path / "J.jsonl")] == [7.0, 7.0] and "no_answer" not in counts
    other = write_answers(tmp_path / "B.jsonl", [{**x, "question_id": 9999} for x in q])
    with pytest.raises(
        ParrotError,
        match=r"B\.jsonl: none of its 1 answers is for a selected question of "
        r"mt-bench \(answered ids: 9999\)",
    ):
        judge(judge_cfg(fault_server, other, tmp_path / "J2.jsonl", limit=1))


def test_a_judgment_file_takes_more_models_but_not_another_judge_setting(fault_server, tmp_path):
    from parrot import ParrotError

    fault_server.responder = lambda req: "Rating: [[6]]"
    q = load_bench("mt-bench").select(limit=1).questions
    a = write_answers(tmp_path / "A.jsonl", q, model="model-a")
    b = write_answers(tmp_path / "B.jsonl", q, model="model-b")
    judge(judge_cfg(fault_server, a, tmp_path / "J.jsonl", limit=1))
    judge(judge_cfg(fault_server, b, tmp_path / "J.jsonl", limit=1, resume=True))  # another model, same judge: added
    assert sorted({r["model"] for r in read(tmp_path / "J.jsonl")}) == ["model-a", "model-b"]
    cfg = judge_cfg(fault_server, a, tmp_path / "J.jsonl", limit=1, resume=True)
    cfg.judge.temperature = 0.7
    with pytest.raises(ParrotError, match=r"holds eval judge records made with other settings \(judge\.temperature"):
        judge(cfg)


def answer_file(server, path, bench):
    """Answers made by ``parrot eval answer`` for ``bench`` (its manifest names the bench)."""
    from parrot.evaluate.answer import AnswerConfig, answer

    model = BackendConfig(spec="openai:model-a", base_url=server.base_url, max_retries=0)
    answer(AnswerConfig(output=str(path), bench=bench, model=model, limit=2))
    return path


@pytest.mark.parametrize("answered, judged", [("mt-bench", "mt-bench-pp"), ("mt-bench-pp", "mt-bench")])
def test_answers_made_for_another_bench_are_an_error_naming_both(fault_server, tmp_path, answered, judged):
    from parrot import ParrotError

    answers = answer_file(fault_server, tmp_path / "A.jsonl", answered)
    fault_server.requests.clear()
    with pytest.raises(
        ParrotError,
        match=rf"A\.jsonl: answers for {answered} \(its manifest says\), judged "
        rf"with --bench {judged}; judge them with --bench {answered}",
    ):
        judge(judge_cfg(fault_server, answers, tmp_path / "J.jsonl", bench=judged, limit=2))
    assert fault_server.requests == [] and not (tmp_path / "J.jsonl").exists()


@pytest.mark.parametrize("answered, judged, found", [("mt-bench", "mt-bench-pp", 2), ("mt-bench-pp", "mt-bench", 8)])
def test_answers_without_a_manifest_must_have_the_questions_turns(fault_server, tmp_path, answered, judged, found):
    """FastChat's answer files have no manifest: the number of turns tells the bench apart."""
    from parrot import ParrotError

    answers = write_answers(tmp_path / "A.jsonl", load_bench(answered).select(limit=2).questions)
    expected = len(load_bench(judged).questions[0]["turns"])
    with pytest.raises(
        ParrotError,
        match=rf"A\.jsonl: question 81: expected {expected} answer turns "
        rf"\({judged} asks {expected}\), found {found}; answers made for "
        "another benchmark",
    ):
        judge(judge_cfg(fault_server, answers, tmp_path / "J.jsonl", bench=judged, limit=2))
    assert fault_server.requests == []
