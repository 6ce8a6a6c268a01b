"""``parrot report``: the experiment's one report from small real inputs — a real stats run, synthesize-
shaped outputs with manifests and the real filter stage on one, training manifests, CaPO pairs and judgment
files in the judge's schema — and the paired bootstrap against known cases."""

from __future__ import annotations

import json
import random
import re

import pytest
from golden import assert_golden

from parrot import ParrotError, cli
from parrot.core.config import build_config
from parrot.core.manifest import read_manifest, record_manifest
from parrot.evaluate.verified import read_bench
from parrot.evaluate.verify import VerifyConfig, verify_answers
from parrot.filter.stage import FilterConfig, filter_sessions
from parrot.report.bootstrap import paired_bootstrap, question_means
from parrot.report.numbers import judge_too_small, pair_counts
from parrot.report.stage import REPORT_FILES, ExperimentReportConfig, experiment_report
from parrot.stats.stage import StatsConfig, stats

SECTIONS = [
    "Data",
    "Simulators",
    "Training",
    "CaPO pairs",
    "MT-Bench",
    "MT-Bench++",
    "Verified instruction following (verified-mt)",
    "Comparisons",
    "What the numbers support",
]
QUESTIONS = [81 + i for i in range(12)]


# ---------------------------------------------------------------- the bootstrap


def test_bootstrap_of_identical_models_is_zero_with_zero_width():
    scores = {str(q): random.Random(q).uniform(1, 10) for q in QUESTIONS}
    r = paired_bootstrap(scores, dict(scores), n_boot=500, seed=3)
    assert r["mean_diff"] == 0.0 and r["low"] == 0.0 == r["high"] and r["n"] == 12
    assert not r["excludes_zero"]


def test_bootstrap_of_a_constant_shift_is_that_shift_and_excludes_zero():
    b = {str(q): random.Random(q).uniform(1, 8) for q in QUESTIONS}
    a = {q: s + 0.75 for q, s in b.items()}
    r = paired_bootstrap(a, b, n_boot=500)
    assert r["mean_diff"] == pytest.approx(0.75) and r["low"] == pytest.approx(0.75) == r["high"]
    assert r["excludes_zero"]
    flipped = paired_bootstrap(b, a, n_boot=500)
    assert flipped["high"] == pytest.approx(-0.75) and flipped["excludes_zero"]


def test_bootstrap_pairs_only_shared_questions_is_seeded_and_brackets_the_mean():
    rng = random.Random(0)
    b = {str(q): rng.uniform(1, 10) for q in range(200)}
    a = {q: s + rng.gauss(0.3, 1.0) for q, s in b.items()}
    a["extra"] = 10.0  # only one model has it: not paired, not counted
    r = paired_bootstrap(a, b, n_boot=2000, seed=1)
    assert r["n"] == 200 and r["low"] < r["mean_diff"] < r["high"]
    assert 0.1 < r["high"] - r["low"] < 0.6  # ~ 2 x 1.96 x 1/sqrt(200)
    assert paired_bootstrap(a, b, n_boot=2000, seed=1) == r
    assert paired_bootstrap({"1": 1.0}, {"2": 1.0})["mean_diff"] is None


def test_question_means_average_turns_and_leave_out_minus_one():
    recs = [judgment("m", 81, 1, 4), judgment("m", 81, 2, 8), judgment("m", 82, 1, -1), judgment("n", 82, 1, 3)]
    assert question_means(recs) == {"m": {"81": 6.0}, "n": {"82": 3.0}}


def test_judges_too_small_to_rank():
    assert judge_too_small("smollm2") and judge_too_small("gguf:x/SmolLM2-360M-Instruct.gguf")
    assert judge_too_small("hf:Qwen2.5-0.5B-Instruct") and not judge_too_small("vllm:Qwen2.5-7B-Instruct")
    assert not judge_too_small("openai:gpt-4") and judge_too_small("openai:my-judge", ["my-judge"])


def test_comparisons_must_name_two_models():
    with pytest.raises(ParrotError, match="MODEL_A vs MODEL_B"):
        ExperimentReportConfig(output="o", compare=["sft_parrot"])
    with pytest.raises(ParrotError, match="asker_models: expected 1"):
        ExperimentReportConfig(output="o", simulators=["s.jsonl"], asker_models=["a", "b"])


# ---------------------------------------------------------------- inputs


def session(questions, answer="Sure, here it is.", **meta):
    msgs = []
    for q in questions:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]
    return {"id": meta.pop("id", None) or str(random.random()), "messages": msgs, "meta": meta}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


FOLLOWUPS = ["Why is that?", "Can you make it shorter?", "What about the second one?", "And in Python?"]
TOPICS = ["bread", "rust lifetimes", "black holes", "tax forms", "jazz chords", "sql joins", "knitting", "mars"]


def real_sessions(path, n, turns):
    rng = random.Random(n)
    return write_jsonl(
        path,
        [
            session([f"Tell me about {rng.choice(TOPICS)} please, in detail."] + rng.sample(FOLLOWUPS, turns - 1))
            for _ in range(n)
        ],
    )


def synth_output(path, n, mode, end_reason, turns):
    """A synthesize output: sessions with their end reasons, and its manifest."""
    rng = random.Random(len(mode))
    recs = [
        session(
            [f"How do I start with {rng.choice(TOPICS)}?"]
            + [rng.choice(FOLLOWUPS) + f" ({t})" for t in range(turns - 1)],
            end_reason=end_reason,
            seed={"kind": "question"},
            asker={"spec": "gguf:models/ask/model.gguf" if mode == "trained" else "smollm2", "mode": mode},
        )
        for _ in range(n)
    ]
    write_jsonl(path, recs)
    config = {"seeds": "seeds.jsonl", "max_turns": 4, "asker_mode": mode, "asker": {"spec": "smollm2"}}
    record_manifest(path, stage="synthesize", config=config, counts={"sessions": n})
    return str(path)


# train-ask's per-session pass over 3 held-out sessions: the trained simulator stops right twice and
# misses once (precision 1, recall 2/3, F1 0.8), the base never stops (recall 0, F1 0); its loss is
# 0.7 higher on every session
HELDOUT = {
    "rule": "stops when log P(stop marker + end of turn | conversation through the answer) > log(0.5)",
    "sessions": 3,
    "turns_shortened": 0,
    "turns_too_long": 0,
    "trained": {
        "loss": {"h1": 1.8, "h2": 2.0, "h3": 1.9},
        "stops": {"h1": [[False, False], [True, True]], "h2": [[True, True]], "h3": [[False, False], [False, True]]},
    },
    "base": {
        "loss": {"h1": 2.5, "h2": 2.7, "h3": 2.6},
        "stops": {"h1": [[False, False], [False, True]], "h2": [[False, True]], "h3": [[False, False], [False, True]]},
    },
}


def training_dir(path, stage, losses, **extra):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    record_manifest(path, stage=stage, config={"data": ["x.jsonl"]}, losses=losses, **extra)
    return str(path)


def judgment(model, qid, turn, score, judge="gpt-4"):
    return {
        "question_id": qid,
        "model": model,
        "judge": [judge, "single-v1" if turn == 1 else "single-v1-multi-turn"],
        "user_prompt": "...",
        "judgment": f"Rating: [[{score}]]",
        "score": score,
        "turn": turn,
        "tstamp": 0.0,
    }


def judgment_file(path, bench, spec, scores):
    """``scores``: ``{model: {(question, turn): score}}``, in FastChat's single-judgment schema."""
    judge = spec.split(":")[-1]
    write_jsonl(path, [judgment(m, q, t, s, judge) for m, by in scores.items() for (q, t), s in by.items()])
    record_manifest(path, stage="eval judge", config={"bench": bench, "judge": {"spec": spec}}, counts={})
    return str(path)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Every input of the report, small and real, and the report made from them."""
    tmp = tmp_path_factory.mktemp("experiment")
    real = real_sessions(tmp / "real.jsonl", 30, 3)
    parrot = synth_output(tmp / "synth_parrot.jsonl", 24, "trained", "stop_marker", 3)
    selfchat = synth_output(tmp / "synth_selfchat.jsonl", 5, "prompted", "max_turns", 4)
    filtered = []
    for name, path in (("parrot", parrot), ("selfchat", selfchat)):
        out = tmp / f"filtered_{name}.jsonl"
        filter_sessions(build_config(FilterConfig, {"input": path, "output": str(out), "min_turns": 1}))
        filtered.append(str(out))
    stats_dir = tmp / "stats"
    stats(
        build_config(
            StatsConfig,
            {
                "data": [filtered[0], filtered[1], real],
                "names": ["Parrot-Ask", "self-chat", "ShareGPT"],
                "output": str(stats_dir),
                "tokenizer": "none",
                "embeddings": False,
            },
        )
    )
    ask = training_dir(
        tmp / "models" / "ask",
        "train-ask",
        {"train_loss": 2.1, "last_logged_loss": 1.8, "steps": 6, "eval_loss": 1.9, "eval_loss_base": 2.6},
        loss_curve=[[1, 2.5], [2, 2.2], [4, 2.0], [6, 1.8]],
        eval_curve=[[0, 2.6], [6, 1.9]],
        heldout=HELDOUT,
    )
    chat = training_dir(tmp / "models" / "sft_parrot", "train-chat", {"train_loss": 1.5, "steps": 4})
    (tmp / "models" / "sft_parrot" / "checkpoint-4").mkdir()
    (tmp / "models" / "sft_parrot" / "checkpoint-4" / "trainer_state.json").write_text(
        json.dumps(
            {"log_history": [{"step": 2, "loss": 1.7}, {"step": 4, "loss": 1.4}, {"step": 4, "train_loss": 1.5}]}
        )
    )
    dpo = training_dir(tmp / "models" / "capo_dpo", "train-dpo", {"train_loss": 0.69, "steps": 1})
    capo = write_jsonl(
        tmp / "capo.jsonl",
        [
            {
                "id": f"p{i}",
                "prompt": [{"role": "user", "content": "q"}],
                "chosen": [{"role": "assistant", "content": "good"}],
                "rejected": [{"role": "assistant", "content": "bad"}],
                "meta": {"strategy": strategy, "source_id": f"s{i}", "turn": turn},
            }
            for i, (strategy, turn) in enumerate(
                [("ignore", 2), ("ignore", 3), ("hallucinate", 2), ("misunderstand", 3), ("misunderstand", 3)]
            )
        ],
    )
    rng = random.Random(5)
    base = {(q, t): rng.randint(2, 8) for q in QUESTIONS for t in range(1, 9)}
    # MT-Bench judged by the embedded 135M judge: every model the same but one better by a point
    mtb = judgment_file(
        tmp / "judge_mtb.jsonl",
        "mt-bench",
        "smollm2",
        {
            "sft_selfchat": {k: s for k, s in base.items() if k[1] <= 2},
            "sft_parrot": {k: s + 1 for k, s in base.items() if k[1] <= 2},
            "capo_dpo": {k: s + 1 for k, s in base.items() if k[1] <= 2},
        },
    )
    # MT-Bench++ by a big judge: sft_parrot one point above self-chat on every question and turn,
    # capo_dpo the same as sft_parrot; base answered only 3 questions (too few per turn to read)
    pp = judgment_file(
        tmp / "judge_pp.jsonl",
        "mt-bench-pp",
        "openai:gpt-4",
        {
            "sft_selfchat": base,
            "sft_parrot": {k: s + 1 for k, s in base.items()},
            "capo_dpo": {k: s + 1 for k, s in base.items()},
            "base": {k: s for k, s in base.items() if k[0] in QUESTIONS[:3]},
        },
    )
    # verified-mt, 20 conversations: sft_parrot and capo_dpo answer "ok" (it follows some
    # instructions: no commas, few words...), sft_selfchat answers nothing (an empty answer follows none)
    items = read_bench("verified-mt")[:20]
    answers = [
        write_jsonl(
            tmp / f"verified_{model}.jsonl",
            [
                {"question_id": it.key, "model_id": model, "choices": [{"turns": [reply] * len(it.turns)}]}
                for it in items
            ],
        )
        for model, reply in (("sft_parrot", "ok"), ("capo_dpo", "ok"), ("sft_selfchat", ""))
    ]
    verified = tmp / "verify.jsonl"
    verify_answers(VerifyConfig(answers=[str(a) for a in answers], output=str(verified)))
    out = tmp / "report"
    cfg = build_config(
        ExperimentReportConfig,
        {
            "output": str(out),
            "stats": str(stats_dir),
            "simulators": [parrot, selfchat],
            "simulator_names": ["Parrot-Ask", "self-chat"],
            "filtered": filtered,
            "real": real,
            "asker_models": [ask, None],
            "embeddings": False,
            "training": [ask, chat, dpo],
            "capo": [capo],
            "judgments": [mtb, pp],
            "verified": [str(verified)],
            "compare": ["sft_parrot vs sft_selfchat", "capo_dpo vs sft_parrot"],
            "n_boot": 300,
        },
    )
    doc = experiment_report(cfg)
    return {"out": out, "doc": doc, "cfg": cfg, "stats": stats_dir, "md": (out / "report.md").read_text()}


# ---------------------------------------------------------------- the report


def test_every_section_in_order_with_its_table(experiment):
    md = experiment["md"]
    headings = re.findall(r"^## (.+)$", md, re.M)
    assert headings == SECTIONS
    assert "Not run in this experiment" not in md
    assert "| dataset | sessions |" in md and "| Parrot-Ask |" in md and "| ShareGPT |" in md
    assert "| asker arm | asker mode | sessions |" in md and "| real users |" in md
    assert "| Parrot-Ask | 1.900 | 2.600 | -0.70 | -0.700 [-0.700, -0.700] (3 sessions, too few to read) |" in md
    assert "| Parrot-Ask | trained simulator | 1.00 [1.00, 1.00] | 0.67 [" in md  # termination
    assert "| Parrot-Ask | untrained base | – | 0.00 [0.00, 0.00] | 0.00 [0.00, 0.00] | 5 (3) | 3 (too few" in md
    assert "| asker arm | questions drawn | degenerate before redraws |" in md
    assert "| self-chat (only 5 sessions) | prompted | 5 | 0% [0, 0] |" in md
    assert "| ask | train-ask | 6 |" in md and "| sft_parrot | train-chat |" in md and "| capo_dpo | train-dpo |" in md
    assert "| pair file | hallucinate | ignore | misunderstand | total |" in md
    assert "| capo | 1 | 2 | 2 | 5 |" in md and "| capo | 2 | 3 |" in md  # by strategy; turns 2 and 3
    assert "| model | overall | turn 1 | turn 2 | judged |" in md  # MT-Bench
    assert "| turn 8 | judged | -1 excluded |" in md  # MT-Bench++
    assert md.count("| comparison | bench | paired over |") == 1
    assert "| interval | MDE (80% power) | needed |" in md
    assert not re.search(r"\{[a-z_.\[\]'\"]+\}", md)  # no placeholder left unfilled


def test_the_numbers_are_in_report_json(experiment):
    doc = json.loads((experiment["out"] / "report.json").read_text())
    assert all(doc["run"].values()) and doc["sections"]["capo"]["files"][0]["by_turn"] == {"2": 2, "3": 3}
    arms = doc["sections"]["simulators"]["arms"]
    assert arms[0]["measures"]["self_ended"] == 1.0 and arms[1]["measures"]["too_few"]
    held = arms[0]["heldout_loss"]
    assert {k: held[k] for k in ("trained", "base", "difference")} == {
        "trained": 1.9,
        "base": 2.6,
        "difference": pytest.approx(-0.7),
    }
    assert held["per_session"]["mean_diff"] == -0.7 == held["per_session"]["low"] == held["per_session"]["high"]
    trained, base = held["termination"]["trained"], held["termination"]["base"]
    assert (trained["precision"]["value"], trained["recall"]["value"]) == (1.0, pytest.approx(2 / 3))
    assert trained["f1"]["value"] == pytest.approx(0.8) and trained["f1"]["n"] == 3 == trained["sessions"]
    assert trained["f1"]["low"] <= 0.8 <= trained["f1"]["high"] and (trained["turns"], trained["stops"]) == (5, 3)
    assert base["precision"]["value"] is None and base["f1"] == {**base["f1"], "value": 0.0, "low": 0.0, "high": 0.0}
    assert arms[1]["heldout_loss"] is None
    ci = arms[0]["measures"]["intervals"]
    assert ci["self_ended"]["value"] == 1.0 and ci["self_ended"]["n_boot"] == 300
    curves = {m["name"]: m["loss_curve"] for m in doc["sections"]["training"]["models"]}
    assert curves == {
        "ask": [[1, 2.5], [2, 2.2], [4, 2.0], [6, 1.8]],
        "sft_parrot": [[2, 1.7], [4, 1.4]],
        "capo_dpo": [],
    }
    results = {(r["comparison"], r["bench"]): r for r in doc["sections"]["comparisons"]}
    shift = results[("sft_parrot vs sft_selfchat", "mt-bench-pp")]
    assert shift["overall"]["n"] == 12 and shift["overall"]["low"] == pytest.approx(1.0) == shift["overall"]["high"]
    assert set(shift["by_turn"]) == {str(t) for t in range(1, 9)}
    same = results[("capo_dpo vs sft_parrot", "mt-bench-pp")]["overall"]
    assert same["low"] == 0.0 == same["high"] and not same["excludes_zero"]
    assert doc["sections"]["bench:mt-bench"]["too_small_judges"] == {"smollm2": "under ~1B parameters"}


def test_the_words_say_what_is_supported_and_that_a_small_judge_ranks_nothing(experiment):
    support = experiment["md"].split("## What the numbers support")[1]
    assert (
        "sft_parrot vs sft_selfchat on MT-Bench++: **supported**: sft_parrot scores higher than sft_selfchat by 1.00"
        in support
    )
    # the same scores: no difference to see, and no spread to say what 12 questions could see
    assert "capo_dpo vs sft_parrot on MT-Bench++: **cannot tell**: capo_dpo − sft_parrot = +0.00" in support
    assert "too few questions, or differences all alike, to estimate what this size can detect" in support
    assert "no difference" not in support.lower().replace("no difference on", "")
    # MT-Bench's judge is the embedded 135M model: the same one-point shift is not supported there
    assert "sft_parrot vs sft_selfchat on MT-Bench: sft_parrot − sft_selfchat = +1.00" in support
    assert "**not supported**: the judge (`smollm2`) is too small to rank models" in support
    assert "so no difference on MT-Bench is supported or meaningful" in support
    # verified-mt is checked by a program: no judge rule; an empty answer follows nothing
    assert (
        "sft_parrot vs sft_selfchat on verified-mt: **supported**: sft_parrot follows more of its instructions"
        in support
    )
    assert "capo_dpo vs sft_parrot on verified-mt: **cannot tell**: capo_dpo − sft_parrot = +0.0 pp" in support
    assert "2 of 6 comparison(s) supported by this data" in support


def test_the_data_tables_compared_metrics_have_intervals_over_sessions_and_an_mde(experiment):
    doc = experiment["doc"]
    rows = {r["name"]: r for r in doc["sections"]["data"]["datasets"]}
    found = {(c["a"], c["b"], c["metric"]): c for c in doc["sections"]["data"]["comparisons"]}
    assert {k[:2] for k in found} == {
        ("Parrot-Ask", "self-chat"),
        ("Parrot-Ask", "ShareGPT"),
        ("self-chat", "ShareGPT"),
    }
    # the difference is that of the table's own values
    turns = found["Parrot-Ask", "ShareGPT", "turns"]
    assert turns["diff"] == pytest.approx(rows["Parrot-Ask"]["turns_mean"] - rows["ShareGPT"]["turns_mean"], abs=1e-4)
    words = found["Parrot-Ask", "self-chat", "user_words"]
    table = rows["Parrot-Ask"]["user_words"]["mean"] - rows["self-chat"]["user_words"]["mean"]
    sizes = [rows["Parrot-Ask"]["sessions"], rows["self-chat"]["sessions"]]
    assert words["diff"] == pytest.approx(table, abs=1e-4) and words["n"] == sizes
    share = found["Parrot-Ask", "ShareGPT", "context_share"]
    table = (
        rows["Parrot-Ask"]["context_dependent_share_of_followups"]
        - rows["ShareGPT"]["context_dependent_share_of_followups"]
    )
    assert share["diff"] == pytest.approx(table, abs=1e-4)
    for c in found.values():
        assert c["diff"] is None or c["low"] <= c["diff"] <= c["high"]
    md = experiment["md"].split("## Data")[1].split("## Simulators")[0]
    assert "| datasets | metric | difference [95% interval] | sessions | interval | MDE (80% power) | needed |" in md
    assert "| Parrot-Ask − self-chat | user len (words) |" in md and f"| {sizes[0]} / {sizes[1]} |" in md


def test_the_verified_section_shows_accuracy_by_turn_and_retention_for_every_model(experiment):
    md = experiment["md"].split("## Verified instruction following (verified-mt)")[1].split("## Comparisons")[0]
    assert "| model | instructions (strict) | instructions (loose) | turns all followed (strict) | checked |" in md
    for model in ("sft_parrot", "capo_dpo", "sft_selfchat"):
        assert f"| {model} |" in md
    assert "| sft_selfchat | 0.0% [0, 0] | 0.0% [0, 0] | 0.0% [0, 0] |" in md
    assert "| model | turn 1 | turn 2 | turn 3 |" in md and "| model | 0 ago | 1 ago |" in md
    assert "verified_verified-mt_by_turn.png" in md and "verified_verified-mt_retention.png" in md
    data = experiment["doc"]["sections"]["verified:verified-mt"]["models"]
    ok = data["sft_parrot"]["overall"]["instruction"]["strict"]
    assert ok["n"] == 20 and 0 < ok["low"] <= ok["mean"] <= ok["high"] < 1


def test_every_arm_is_in_every_plot_or_named_under_it(experiment):
    md = experiment["md"]
    for png in (
        "data_context_by_turn.png",
        "simulators_session_lengths.png",
        "training_loss.png",
        "capo_pairs_by_turn.png",
        "score_by_turn_mt-bench.png",
        "score_by_turn_mt-bench-pp.png",
    ):
        assert f"]({png})" in md and (experiment["out"] / png).read_bytes()[:4] == b"\x89PNG"
    # every plot written is one the stage knows (and removes when it starts over)
    assert {p.name for p in experiment["out"].glob("*.png")} <= set(REPORT_FILES)
    # the self-chat data had 5 sessions: fewer than 20 questions at every turn, named, not silently left out
    note = "self-chat: not plotted, no turn has 20+ questions (most: 5)"
    assert f"*{note}*" in md
    assert note in (experiment["stats"] / "stats.md").read_text()
    assert "*self-chat: only 5 sessions, too few to read a distribution from.*" in md
    assert "*capo_dpo: no loss curve recorded.*" in md
    assert "*base: turn(s) 1, 2, 3, 4, 5, 6, 7, 8 have fewer than 10 scored questions (as few as 3).*" in md


def test_the_html_is_self_contained(experiment):
    page = (experiment["out"] / "report.html").read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "<script" not in page and "<link" not in page
    assert page.count('src="data:image/png;base64,') == len(experiment["doc"]["plots"]) == 10
    for title in SECTIONS:
        assert f">{title}</h2>" in page
    assert "<strong>supported</strong>" in page


def test_the_report_and_the_stats_it_shows_are_the_golden_ones(experiment):
    """The same inputs make the same report, to the byte but for its folder and date (issue 25)."""
    tmp = experiment["out"].parent
    for name in ("report.md", "report.json"):
        assert_golden(name, experiment["out"] / name, tmp)
    assert_golden("stats.md", experiment["stats"] / "stats.md", tmp)


def test_a_report_of_nothing_says_what_was_not_run_and_is_up_to_date_when_run_again(tmp_path):
    out = tmp_path / "r"
    assert cli.main(["report", "-o", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert re.findall(r"^## (.+)$", md, re.M) == SECTIONS
    assert md.count("Not run in this experiment.") == len(SECTIONS)
    assert read_manifest(out / "report")["stage"] == "report"
    assert "data:image" not in (out / "report.html").read_text()
    before = (out / "report.md").stat().st_mtime_ns
    assert cli.main(["report", "-o", str(out), "--resume"]) == 0  # one pass, same settings: nothing to do
    assert (out / "report.md").stat().st_mtime_ns == before


def test_a_broken_stats_file_is_an_error_naming_it_and_its_line(tmp_path, capsys):
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "stats.json").write_text('{"datasets": [\n  {"name": "a",\n  oops}\n]}')
    assert cli.main(["report", "-o", str(tmp_path / "r"), "--stats", str(tmp_path / "stats")]) == 2
    assert f"{tmp_path / 'stats' / 'stats.json'}:3: not JSON" in capsys.readouterr().err
    (tmp_path / "stats" / "stats.json").write_text('{"rows": []}')
    assert cli.main(["report", "-o", str(tmp_path / "r"), "--stats", str(tmp_path / "stats")]) == 2
    assert "not the stats.json of `parrot stats`" in capsys.readouterr().err


def test_a_loss_curve_comes_from_the_latest_numbered_checkpoint(tmp_path):
    from parrot.train.trainer import loss_curve

    for name, loss in (("checkpoint-2", 2.0), ("checkpoint-10", 1.0), ("checkpoint-best", 9.0)):
        (tmp_path / name).mkdir()
        state = {"log_history": [{"loss": loss, "step": 1}, {"eval_loss": 5.0, "step": 1}, {"loss": loss}]}
        (tmp_path / name / "trainer_state.json").write_text(json.dumps(state))
    assert loss_curve(tmp_path, None) == [[1.0, 1.0]]  # checkpoint-10, not -2 (text order) nor -best
    assert loss_curve(tmp_path, {"loss_curve": [[3, 0.5]]}) == [[3.0, 0.5]]  # the manifest's first


def test_a_retrained_model_makes_the_report_stale_its_weights_are_not_read(tmp_path):
    from parrot.core.fingerprint import config_hash

    model = training_dir(tmp_path / "ask", "train-ask", {"train_loss": 2.0})
    (tmp_path / "ask" / "model.safetensors").write_bytes(b"weights")
    cfg = ExperimentReportConfig(output=str(tmp_path / "r"), training=[model])
    before = config_hash(cfg)
    (tmp_path / "ask" / "model.safetensors").write_bytes(b"other weights")
    assert config_hash(ExperimentReportConfig(output=str(tmp_path / "r"), training=[model])) == before
    training_dir(tmp_path / "ask2", "train-ask", {"train_loss": 1.0})
    (tmp_path / "ask.manifest.json").write_text((tmp_path / "ask2.manifest.json").read_text())
    assert config_hash(ExperimentReportConfig(output=str(tmp_path / "r"), training=[model])) != before


def test_pair_counts_by_strategy_and_turn(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl", [{"meta": {"strategy": "ignore", "turn": 4}}, {"meta": {"strategy": "ignore"}}]
    )
    assert pair_counts(path) == {
        "pairs": 2,
        "by_strategy": {"ignore": 2},
        "by_turn": {4: 1},
        "by_turn_strategy": {"ignore": {4: 1}},
    }


def test_the_simulators_section_shows_each_arms_human_likeness_with_its_interval():
    """The stats run's AUC of each arm's questions against real users', beside the other simulator
    measures; an arm the stats run did not measure has no row."""
    from parrot.report.sections import simulators_section

    likeness = {"auc": 0.7, "auc_ci": {"value": 0.68, "low": 0.6, "high": 0.77}, "n_per_class": 40}
    arms = [
        {"name": "Parrot-Ask", "measures": {"sessions": 30}, "heldout_loss": None, "human_likeness": likeness},
        {"name": "Self-chat", "measures": {"sessions": 30}, "heldout_loss": None, "human_likeness": None},
    ]
    tables = [b["table"] for b in simulators_section({"arms": arms})["blocks"] if "table" in b]
    [auc] = [t for t in tables if t["headers"][1] == "AUC ↓"]
    assert auc["rows"] == [["Parrot-Ask", "0.680 [0.600, 0.770]", "40"]]
