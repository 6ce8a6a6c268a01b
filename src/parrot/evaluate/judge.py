"""``parrot eval judge``: grade every answered turn, one FastChat single-judgment record each.

    parrot eval judge --bench mt-bench --answers A.jsonl --judge openai:gpt-4 -o J.jsonl

For each answer file, question and turn k the judge gets the prompt :mod:`parrot.evaluate.judge_prompts`
picks (FastChat's for MT-Bench, byte for byte; the N-turn prompt for turns 2..N of longer
questions), at temperature 0 with max_tokens 2048. An unparsable reply is asked again up to
``parse_retries`` times, then recorded with score -1 (the report excludes and counts those).
A judge call that fails outright (the backend gave up) goes to ``J.jsonl.failures.jsonl``.

Records are FastChat's (``model_judgment/*_single.jsonl``), with ``turn`` running 1..N::

    {"question_id": 81, "model": "smollm2", "judge": ["gpt-4", "single-v1"],
     "user_prompt": "...", "judgment": "... Rating: [[6]]", "score": 6, "turn": 1, "tstamp": ...}

Resumable (``--resume``): a judgment whose (question_id, model, turn, judge model, prompt name) is
already in the output with a score is not asked again; like FastChat, a -1 is asked again on the
next run (the report keeps the scored record). So one judgment file collects several models'
judgments, run after run; another judge setting is refused (the file's fingerprint).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.backends import BackendConfig, SamplingParams
from parrot.backends.executor import Executor
from parrot.core.assets import DATA_DIR_HELP, mtbench_data_dir
from parrot.core.config import opt
from parrot.core.itemloop import ItemFailed, run_items, summary
from parrot.core.jsonl import read_jsonl
from parrot.core.manifest import read_manifest, write_manifest
from parrot.core.outputs import WritesOutput, writes_output
from parrot.evaluate.bench import NEED_REF_CATS, Bench, bench_name, load_bench, load_judge_prompts
from parrot.evaluate.judge_prompts import (
    NTURN_PROMPT_FILES,
    JudgePrompt,
    judge_messages,
    nturn_prompts,
    parse_rating,
    render_judge_prompt,
)

log = logging.getLogger("parrot.evaluate")

JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 2048


@dataclass
class JudgeConfig(WritesOutput, Executor):
    answers: list[str] = opt(help="answer files (FastChat schema), one per model", nargs="+", selects=True, digest=True)
    output: str = opt(help="judgments JSONL (appended to; resumable)", flag="-o", hashed=False)
    bench: str = opt("mt-bench", "mt-bench | mt-bench-pp | a question FILE (FastChat schema)", digest=True)
    judge: BackendConfig = opt(
        lambda: BackendConfig(spec="openai:gpt-4"),
        "the judge model (judge.max_tokens, judge.temperature override 2048 / 0)",
    )
    data_dir: str | None = opt(None, DATA_DIR_HELP, digest=True)
    followups: str | None = opt(None, "MT-Bench++ follow-ups JSONL (default: the packaged file)", digest=True)
    reference_model: str = opt("gpt-4", "reference answers: <data>/mt_bench/reference_answer/<NAME>.jsonl")
    parse_retries: int = opt(
        2, "ask again this many times when no [[rating]] can be read, then score -1", hashed=False, min=0
    )
    limit: int | None = opt(None, "judge only the first N questions (smoke runs)", selects=True, min=1)
    question_ids: list[str] = opt(list, "judge only these question ids", selects=True)
    turns: list[int] = opt(list, "judge only these turns (1-based; default all)", selects=True, min=1)

    STAGE: ClassVar[str] = "eval judge"
    PLACE: ClassVar[str] = "eval/{}.jsonl"


@dataclass
class Match:
    """One judgment to make: ``answers`` are the model's turns, graded at ``turn``."""

    question: dict
    model: str
    answers: list[str]
    turn: int
    prompt_name: str
    system: str
    user: str

    def key(self, judge_model: str) -> tuple:
        return judgment_key(
            {
                "question_id": self.question["question_id"],
                "model": self.model,
                "turn": self.turn,
                "judge": [judge_model, self.prompt_name],
            }
        )


def judgment_key(rec: dict) -> tuple:
    """What identifies a judgment: question, model, turn, judge model, prompt name."""
    judge = rec.get("judge") or ["", ""]
    return (str(rec.get("question_id")), rec.get("model"), rec.get("turn"), judge[0], judge[1])


def all_prompts(data_dir) -> dict[str, JudgePrompt]:
    """FastChat's judge prompts (from the data dir) and ours, by name."""
    prompts = {name: JudgePrompt.from_fastchat(rec) for name, rec in load_judge_prompts(data_dir).items()}
    prompts.update(nturn_prompts())
    return prompts


def prompt_files(data_dir) -> list[str]:
    """The judge prompt files in use (for manifests: their sha256 pins the prompts' version)."""
    ours = Path(__file__).resolve().parent.parent / "prompts"
    return [str(mtbench_data_dir(data_dir) / "judge_prompts.jsonl")] + [
        str(ours / f) for f in NTURN_PROMPT_FILES.values()
    ]


def read_answer_file(path: str | Path) -> tuple[str, dict]:
    """(model name, {question_id: [answer turns]}) of one answer file.

    The model is the records' ``model_id`` (FastChat names it after the file: used when absent).
    """
    path = Path(path)
    models, answers = set(), {}
    for lineno, rec in read_jsonl(path):
        try:
            answers[str(rec["question_id"])] = list(rec["choices"][0]["turns"])  # 81 and "81" alike
        except (KeyError, IndexError, TypeError):
            raise ParrotError(
                f"{path}:{lineno}: expected FastChat's answer schema "
                f"(question_id, choices[0].turns), found keys {sorted(rec)}"
            ) from None
        models.add(rec.get("model_id") or path.stem)
    if len(models) > 1:
        raise ParrotError(f"{path}: expected answers of one model, found model_id {sorted(models)}")
    return (models.pop() if models else path.stem), answers


def answered_bench(path: str | Path) -> str | None:
    """The benchmark an answer file was made for, from its manifest (``eval answer`` writes one;
    FastChat's files have none: None)."""
    manifest = read_manifest(path) or {}
    if manifest.get("stage") != "eval answer":
        return None
    made_for = manifest.get("bench") or (manifest.get("config") or {}).get("bench")
    return bench_name(str(made_for)) if made_for else None


@dataclass(frozen=True)
class JudgeRun:
    """What a judgment file grades and who graded it (:func:`judge_run`)."""

    bench: str  # mt-bench, mt-bench-pp or a question file's name (bench_name)
    judge: str | None  # the judge's model spec


def judge_run(path: str | Path, records: list[dict]) -> JudgeRun:
    """The bench and judge of a judgment file, from its manifest; a file without one (FastChat's
    own) from its ``records``: the judge they name, and MT-Bench++ when a turn is past 2."""
    config = (read_manifest(path) or {}).get("config") or {}
    judge = config.get("judge")
    spec = judge.get("spec") if isinstance(judge, dict) else judge
    if not spec:
        spec = next(((r.get("judge") or [None])[0] for r in records if r.get("judge")), None)
    if config.get("bench"):
        return JudgeRun(bench_name(str(config["bench"])), spec)
    return JudgeRun("mt-bench-pp" if any(int(r["turn"]) > 2 for r in records) else "mt-bench", spec)


def check_answers_fit(path: str | Path, bench: Bench, answers: dict) -> None:
    """Refuse answers made for another benchmark: the one the answer file's manifest names, or,
    without a manifest, answers whose number of turns is not their question's (2-turn MT-Bench
    answers judged as 8-turn MT-Bench++, or the other way round)."""
    made_for = answered_bench(path)
    if made_for is not None and made_for != bench.name:
        raise ParrotError(
            f"{path}: answers for {made_for} (its manifest says), judged with --bench "
            f"{bench.name}; judge them with --bench {made_for}, or answer {bench.name} first"
        )
    for q in bench.questions:
        turns = answers.get(str(q["question_id"]))
        if turns is not None and len(turns) != len(q["turns"]):
            raise ParrotError(
                f"{path}: question {q['question_id']}: expected {len(q['turns'])} answer turns "
                f"({bench.name} asks {len(q['turns'])}), found {len(turns)}; answers made for "
                "another benchmark? Judge them with the --bench they answered"
            )


def make_matches(
    bench: Bench, prompts: dict, model: str, answers: dict, turns: list[int] | None = None, counts: dict | None = None
) -> list[Match]:
    """Every (question, turn) of ``bench`` that ``answers`` has an answer for."""
    counts = counts if counts is not None else {}
    out = []
    for q in bench.questions:
        ans = answers.get(str(q["question_id"]))
        if ans is None:
            counts["no_answer"] = counts.get("no_answer", 0) + 1
            continue
        n = min(len(ans), len(q["turns"]))
        if n < len(q["turns"]):
            counts["missing_turns"] = counts.get("missing_turns", 0) + len(q["turns"]) - n
        refs = [bench.reference(q["question_id"], k) for k in range(1, len(q["turns"]) + 1)]
        for k in range(1, n + 1):
            if turns and k not in turns:
                continue
            name, system, user = render_judge_prompt(prompts, q, ans, k, refs)
            if q.get("category") in NEED_REF_CATS and "math" not in name:
                counts["no_reference"] = counts.get("no_reference", 0) + 1
            out.append(Match(q, model, ans, k, name, system, user))
    return out


async def judge_match(backend, match: Match, params: SamplingParams, judge_model: str, parse_retries: int) -> dict:
    """Ask the judge (again while no rating can be read) and build FastChat's record."""
    messages = judge_messages(match.system, match.user)
    score, text = -1, ""
    for _ in range(1 + max(0, parse_retries)):
        [c] = await backend.agenerate([messages], params)
        if not c.ok:
            raise ItemFailed("judge_failed", c.error)
        text = c.text
        score = parse_rating(text)
        if score != -1:
            break
    return {
        "question_id": match.question["question_id"],
        "model": match.model,
        "judge": [judge_model, match.prompt_name],
        "user_prompt": match.user,
        "judgment": text,
        "score": score,
        "turn": match.turn,
        "tstamp": time.time(),
    }


def scored_keys(output: str | Path) -> set:
    """Keys of judgments in ``output`` that have a score (a -1 is asked again, as in FastChat)."""
    if not Path(output).exists():
        return set()
    return {judgment_key(r) for _, r in read_jsonl(output, on_error="skip") if r.get("score", -1) != -1}


@writes_output
def judge(cfg: JudgeConfig) -> dict:
    """Run ``parrot eval judge``; return the counts."""
    started = time.monotonic()
    bench = load_bench(cfg.bench, cfg.data_dir, followups=cfg.followups, reference_model=cfg.reference_model).select(
        cfg.limit, cfg.question_ids
    )
    prompts = all_prompts(cfg.data_dir)
    judge_model = cfg.judge.model_spec.model_id
    counts: dict = {}
    matches, seen_models = [], {}
    for path in cfg.answers:
        model, answers = read_answer_file(path)
        if model in seen_models:
            raise ParrotError(
                f"{path}: model {model!r} is also answered by {seen_models[model]}; judge one answer file per model"
            )
        seen_models[model] = path
        check_answers_fit(path, bench, answers)
        found = make_matches(bench, prompts, model, answers, cfg.turns, counts)
        if answers and not found:
            ids = ", ".join(list(answers)[:3])
            raise ParrotError(
                f"{path}: none of its {len(answers)} answers is for a selected question of "
                f"{cfg.bench} (answered ids: {ids}{', ...' if len(answers) > 3 else ''}); "
                "wrong --bench, or answers of another benchmark?"
            )
        matches += found
    if counts.get("no_reference"):
        log.warning(
            "%d judgment(s) of math/reasoning/coding turns have no reference answer: graded with the general prompt",
            counts["no_reference"],
        )
    done = scored_keys(cfg.output)
    inputs = list(cfg.answers) + [str(p) for p in bench.sources] + prompt_files(cfg.data_dir)
    params = cfg.judge.sampling(SamplingParams(temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS))
    log.info(
        "judging %d turn(s) of %d model(s) with %s (%d already done)",
        len(matches),
        len(seen_models),
        judge_model,
        sum(m.key(judge_model) in done for m in matches),
    )
    with cfg.load_backend(cfg.judge) as backend:

        async def work(match: Match) -> dict:
            rec = await judge_match(backend, match, params, judge_model, cfg.parse_retries)
            if rec["score"] == -1:
                counts["unparsable"] = counts.get("unparsable", 0) + 1
            return rec

        run_counts = run_items(
            matches,
            work,
            output=cfg.output,
            key=lambda m: m.key(judge_model),
            done=done,
            concurrency=cfg.judge.concurrency * backend.copies,
            desc="judge",
            total=len(matches),
            unit="turn",
        )
        usage = backend.usage.to_dict()
        described = backend.describe()
    counts.update({k: v for k, v in run_counts.items() if k != "seconds"})
    counts["matches"] = len(matches)
    counts.setdefault("unparsable", 0)
    write_manifest(
        cfg,
        inputs=inputs,
        counts=counts,
        timings={"seconds": round(time.monotonic() - started, 3)},
        sampling=params.to_dict(),
        judge=described,
        usage=usage,
        complete=not run_counts.get("failed"),
    )
    log.info("judgments: %s, %s unparsable (-1) in %s", summary(counts), counts["unparsable"], cfg.output)
    return counts
