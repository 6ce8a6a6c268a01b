"""What one stage reads of another's output goes through the producing package's reader (issue 25):
``synthesize.info`` (a run's manifest, a session's meta, a filter run's manifest), ``stats.report.read_stats``,
``train.trainer.train_run`` and ``evaluate.judge.judge_run``. Each is read here from an output its own stage
wrote, so that a field renamed where it is written fails here instead of printing "–" in the report."""

from __future__ import annotations

import json

import pytest
from synth_helpers import Script, make_cfg, read_out
from test_eval_judge import judge_cfg, write_answers
from test_train import dialogue, dialogues, model_dir  # noqa: F401 - fixtures
from test_train import write_jsonl as write_dialogues

from parrot import ParrotError
from parrot.cli import main
from parrot.core.config import build_config
from parrot.evaluate.bench import load_bench
from parrot.evaluate.judge import JudgeRun, judge, judge_run
from parrot.filter.stage import FilterConfig, filter_run, filter_sessions
from parrot.stats.files import read_stats
from parrot.stats.stage import StatsConfig, stats
from parrot.synthesize.info import SessionInfo, SynthesisRun, run_info, session_info
from parrot.synthesize.stage import synthesize
from parrot.train.trainer import TrainRun, train_run


def test_a_synthesize_run_its_sessions_and_their_filter_read_back(tmp_path, fault_server):
    def ask(k, body):  # no first question on mars (an empty reply is a failed call): no complete turn
        topic = body["messages"][1]["content"].splitlines()[-1].removeprefix("Topic: ")
        if k == 1:
            return "" if topic == "mars" else f"How do I get started with {topic}?"
        return "Why so?" if topic == "rust lifetimes" else "Which mistakes do beginners make most often there?"

    fault_server.responder = Script(ask=ask)
    topics = tmp_path / "topics.txt"
    topics.write_text("baking bread\nrust lifetimes\nmars\n")
    out = tmp_path / "synth.jsonl"
    with pytest.raises(ParrotError, match="1 of 3 sessions failed"):
        synthesize(make_cfg(out, fault_server.base_url, topics=str(topics), num_sessions=3, max_turns=2))
    assert run_info(out) == SynthesisRun(
        max_turns=2, topic_seeded=True, asker_spec="openai:sim", asker_mode="trained", unwritten={"asker_failed": 1}
    )
    assert [session_info(r) for r in read_out(out)] == [
        SessionInfo(end_reason="max_turns", seed_kind="topic", asker={"spec": "openai:sim", "mode": "trained"})
    ] * 2

    filtered = tmp_path / "filtered.jsonl"
    settings = {"input": str(out), "output": str(filtered), "min_question_words": 3, "min_turns": 1}
    filter_sessions(build_config(FilterConfig, settings))
    done = filter_run(filtered)
    assert done.config.min_question_words == 3 and done.config.on_bad_question == "cut"
    assert (done.read, done.written, done.cut, done.dropped) == (2, 2, {"too_short": 1}, {})
    assert (done.turns_read, done.turns_cut, done.turns_written) == (4, 1, 3)
    assert filter_run(tmp_path / "no-such.jsonl") is None


def test_a_stats_run_read_back(tmp_path):
    data = write_dialogues(tmp_path / "d.jsonl", [dialogue(i, 2) for i in range(3)])
    out = tmp_path / "stats"
    stats(
        build_config(
            StatsConfig, {"data": [str(data)], "output": str(out), "tokenizer": "none", "rouge_max_tokens": 32}
        )
    )
    run = read_stats(out)
    assert [r["name"] for r in run.datasets] == ["d"] and run.config.rouge_max_tokens == 32
    (out / "stats.json").write_text(json.dumps({"datasets": [], "config": {"renamed_setting": 1}}))
    with pytest.raises(ParrotError, match="renamed_setting"):
        read_stats(out)


def test_a_judge_run_read_back(tmp_path, fault_server):
    fault_server.responder = lambda req: "Rating: [[6]]"
    q = load_bench("mt-bench").select(limit=1).questions
    out = tmp_path / "J.jsonl"
    judge(judge_cfg(fault_server, write_answers(tmp_path / "A.jsonl", q), out, limit=1))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert judge_run(out, records) == JudgeRun(bench="mt-bench", judge="openai:gpt-4")
    # FastChat's own judgments have no manifest: their records say what they can
    fastchat = tmp_path / "fastchat.jsonl"
    fastchat.write_text(out.read_text())
    assert judge_run(fastchat, [*records, {**records[0], "turn": 3}]) == JudgeRun(bench="mt-bench-pp", judge="gpt-4")


def test_a_training_run_read_back(model_dir, dialogues, tmp_path):  # noqa: F811 - fixtures
    held_out = write_dialogues(tmp_path / "dev.jsonl", [dialogue(20 + i, 2) for i in range(2)])
    out = tmp_path / "ask"
    args = ["train-ask", str(dialogues), "-o", str(out), "--model", str(model_dir), "--max-length", "260"]
    args += ["--eval-data", str(held_out), "max_steps=2", "per_device_train_batch_size=2", "disable_tqdm=true"]
    assert main(args) == 0
    run = train_run(out)
    assert run.stage == "train-ask" and run.steps == 2 and [s for s, _ in run.loss_curve] == [1.0, 2.0]
    losses = (run.train_loss, run.last_logged_loss, run.eval_loss, run.eval_loss_base)
    assert all(isinstance(x, float) for x in losses) and run.losses["eval_loss"] == run.eval_loss
    assert run.eval_curve == [[0.0, run.eval_loss_base], [2.0, run.eval_loss]]
    assert train_run(tmp_path / "elsewhere") == TrainRun(None, {}, [], [])  # no manifest: nothing known
