"""``parrot eval answer``: the model under test answers every question, turn by turn.

    parrot eval answer --bench mt-bench-pp --model smollm2 -o answers/smollm2.jsonl

As FastChat's ``gen_model_answer.py`` does: each turn is answered with the model's own earlier
answers in the context, at the category's temperature (writing/roleplay 0.7;
extraction/math/coding/reasoning 0.0; stem/humanities 0.1; others 0.7), and the answers are
stripped. ``--golden-history`` puts the reference answer (where one exists) in the context
instead of the model's own, so later turns are measured from a correct history.

Records are FastChat's (``model_answer/<model>.jsonl``)::

    {"question_id": 81, "answer_id": "...", "model_id": "smollm2",
     "choices": [{"index": 0, "turns": ["turn 1 answer", "turn 2 answer", ...]}], "tstamp": ...}

A conversation that outgrows the model's context (a 2K-context model on MT-Bench++'s 8 turns) is
shortened by the backend, by the one rule of :mod:`parrot.core.shorten`: the oldest whole turns are left
out, as FastChat's own serving code does when it keeps the last tokens of an over-long prompt (at a
turn boundary here, not mid-message). The record says which turns were answered so, in
``meta.shortened`` (turn number -> turns left out), and the manifest counts them.

Resumable by question_id (``--resume``): a question already in the output is not answered
again; a question whose generation failed is not written (see ``<output>.failures.jsonl``) and
is retried on the next run. More questions (``--limit``, ``--question-ids``) are added to the
same file that way; other answer settings are not (the file's fingerprint, in its manifest). When
a run ends the file is sorted by question_id, as FastChat leaves it.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.backends import BackendConfig, SamplingParams
from parrot.backends.executor import Executor
from parrot.core.assets import DATA_DIR_HELP
from parrot.core.config import opt
from parrot.core.itemloop import ItemFailed, done_keys, run_items, summary
from parrot.core.jsonl import AtomicWriter, read_jsonl
from parrot.core.manifest import write_manifest
from parrot.core.outputs import WritesOutput, writes_output
from parrot.evaluate.bench import CATEGORY_TEMPERATURE, DEFAULT_TEMPERATURE, category_temperature, load_bench

log = logging.getLogger("parrot.evaluate")


@dataclass
class AnswerConfig(WritesOutput, Executor):
    output: str = opt(help="answers JSONL (FastChat schema; appended to, resumable)", flag="-o", hashed=False)
    bench: str = opt("mt-bench", "mt-bench | mt-bench-pp | a question FILE (FastChat schema)", digest=True)
    model: BackendConfig = opt(BackendConfig, "the model under test")
    model_id: str | None = opt(
        None, "the model's name in the records (default: from the spec)", hashed=False
    )  # checked against the file's records instead (check_existing)
    data_dir: str | None = opt(None, DATA_DIR_HELP, digest=True)
    followups: str | None = opt(None, "MT-Bench++ follow-ups JSONL (default: the packaged file)", digest=True)
    reference_model: str = opt("gpt-4", "reference answers used by --golden-history")
    golden_history: bool = opt(False, "put reference answers (where present) in the context instead of the model's own")
    max_tokens: int = opt(1024, "new tokens per answer (FastChat's default)", min=1)
    system_prompt: str | None = opt(None, "a system message for the model under test (default: none)")
    limit: int | None = opt(None, "answer only the first N questions (smoke runs)", selects=True, min=1)
    question_ids: list[str] = opt(list, "answer only these question ids", selects=True)

    STAGE: ClassVar[str] = "eval answer"
    PLACE: ClassVar[str] = "eval/{}.jsonl"

    def check_existing(self) -> None:
        check_same_model(self.output, self.model_id or self.model.model_spec.model_id)


async def answer_turns(
    backend,
    question: dict,
    params: SamplingParams,
    *,
    system_prompt: str | None = None,
    history: list | None = None,
    shortened: dict | None = None,
) -> list[str]:
    """Answer ``question["turns"]`` one by one; earlier answers (or ``history[k]`` where it is
    not None: golden answers) stay in the context. A turn whose conversation the backend had to
    shorten to fit the model's context goes into ``shortened`` (turn number -> what was left out)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    answers = []
    for k, text in enumerate(question["turns"]):
        messages.append({"role": "user", "content": text})
        [c] = await backend.agenerate([list(messages)], params)
        if not c.ok:
            raise ItemFailed("generation_failed", f"question {question['question_id']} turn {k + 1}: {c.error}")
        if c.shortened and shortened is not None:
            shortened[str(k + 1)] = c.shortened
        answer = c.text.strip()
        answers.append(answer)
        golden = history[k] if history and k < len(history) else None
        messages.append({"role": "assistant", "content": golden if golden is not None else answer})
    return answers


def check_same_model(output: str | Path, model_id: str) -> None:
    """Refuse to resume into an answer file written for another model."""
    if not Path(output).exists():
        return
    for lineno, rec in read_jsonl(output, on_error="skip"):
        if rec.get("model_id") != model_id:
            raise ParrotError(
                f"{output}:{lineno}: holds answers of model {rec.get('model_id')!r}, "
                f"not {model_id!r}: choose another -o or pass --model-id"
            )


def sort_answers(output: str | Path) -> int:
    """FastChat's ``reorg_answer_file``: sort by question_id, keep the last answer per id."""
    by_id = {rec["question_id"]: rec for _, rec in read_jsonl(output, on_error="skip")}
    with AtomicWriter(output) as out:
        for qid in sorted(by_id, key=lambda q: (str(type(q)), q)):
            out.write(by_id[qid])
    return len(by_id)


@writes_output
def answer(cfg: AnswerConfig) -> dict:
    """Run ``parrot eval answer``; return the counts."""
    started = time.monotonic()
    bench = load_bench(cfg.bench, cfg.data_dir, followups=cfg.followups, reference_model=cfg.reference_model).select(
        cfg.limit, cfg.question_ids
    )
    model_id = cfg.model_id or cfg.model.model_spec.model_id
    done = done_keys(cfg.output, "question_id")
    golden_used = 0
    with cfg.load_backend(cfg.model) as backend:

        async def work(question: dict) -> dict:
            nonlocal golden_used
            params = cfg.model.sampling(
                SamplingParams(temperature=category_temperature(question["category"]), max_tokens=cfg.max_tokens)
            )
            history = None
            if cfg.golden_history:
                history = [bench.reference(question["question_id"], k + 1) for k in range(len(question["turns"]))]
                golden_used += sum(h is not None for h in history)
            shortened: dict = {}
            turns = await answer_turns(
                backend, question, params, system_prompt=cfg.system_prompt, history=history, shortened=shortened
            )
            record = {
                "question_id": question["question_id"],
                "answer_id": uuid.uuid4().hex,
                "model_id": model_id,
                "choices": [{"index": 0, "turns": turns}],
                "tstamp": time.time(),
            }
            if shortened:  # the turns answered with the oldest turns left out of the context
                record["meta"] = {"shortened": shortened}
            return record

        counts = run_items(
            bench.questions,
            work,
            output=cfg.output,
            key=lambda q: q["question_id"],
            done=done,
            concurrency=cfg.model.concurrency * backend.copies,
            desc="answer",
            total=len(bench.questions),
            unit="question",
        )
        usage = backend.usage.to_dict()
        described = backend.describe()
    total = sort_answers(cfg.output) if Path(cfg.output).exists() else 0
    counts = {k: v for k, v in counts.items() if k != "seconds"}
    counts.update(
        {
            "questions": len(bench.questions),
            "answers_in_file": total,
            "golden_turns": golden_used,
            "turns_shortened": usage.get("shortened", 0),
        }
    )
    temps = {
        c: cfg.model.sampling(SamplingParams(temperature=t, max_tokens=cfg.max_tokens)).temperature
        for c, t in {**CATEGORY_TEMPERATURE, "other": DEFAULT_TEMPERATURE}.items()
    }
    write_manifest(
        cfg,
        inputs=[str(p) for p in bench.sources],
        counts=counts,
        timings={"seconds": round(time.monotonic() - started, 3)},
        sampling={
            **cfg.model.sampling(SamplingParams(max_tokens=cfg.max_tokens)).to_dict(),
            "temperature_by_category": temps,
        },
        model=described,
        usage=usage,
        bench=bench.name,
        model_id=model_id,
        complete=not counts.get("failed"),
    )
    log.info("answers: %s; %d in %s", summary(counts), total, cfg.output)
    return counts
