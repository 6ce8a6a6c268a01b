"""The ``stats`` run: stream each dataset once, then the sampled metrics, then the report."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np

from parrot import ParrotError
from parrot.core.dialogue import read_dialogues, user_questions
from parrot.core.log import format_table, progress
from parrot.core.staging import staged_folder
from parrot.core.tokens import TokenCounter, load_tokenizer, tokenizer_path
from parrot.stats.basic import DatasetAccumulator
from parrot.stats.context import is_context_dependent
from parrot.stats.embed import consecutive_similarities
from parrot.stats.rouge import self_rouge
from parrot.stats.sampling import Reservoir
from parrot.stats.stage import StatsConfig

log = logging.getLogger("parrot.stats")


class Timer:
    """Wall and CPU seconds per named step, summed: ``with timer("tokens"): ...``.

    CPU time (all threads of this process) is kept beside wall time because on a shared
    machine wall time mostly measures the neighbours.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.t, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                timer.seconds[name] = timer.seconds.get(name, 0.0) + time.perf_counter() - self.t
                timer.cpu[name] = timer.cpu.get(name, 0.0) + time.process_time() - self.c

        return _Span()

    def rounded(self) -> dict:
        return {k: round(v, 3) for k, v in self.seconds.items()}

    def rounded_cpu(self) -> dict:
        return {k: round(v, 3) for k, v in self.cpu.items()}


def dataset_names(cfg: StatsConfig) -> list[str]:
    if cfg.names and len(cfg.names) != len(cfg.data):
        raise ParrotError(f"--names: expected {len(cfg.data)} names (one per dataset), found {len(cfg.names)}")
    names = cfg.names or [Path(p).name.removesuffix(".jsonl") for p in cfg.data]
    if len(set(names)) != len(names):
        raise ParrotError(f"dataset names must be unique, found {names} (pass --names)")
    return names


def scan(path: str, cfg: StatsConfig, tokenizer, timer: Timer, index: int) -> tuple[DatasetAccumulator, dict]:
    """One pass over a dataset file (invalid records are skipped and counted; bytes that are not
    UTF-8 are an error naming the line, as for every JSONL file)."""
    if not Path(path).is_file():
        raise ParrotError(f"{path}: dataset file not found")
    # a guard against a single pathological message
    tokens = TokenCounter(tokenizer, max_chars=200_000) if tokenizer is not None else None
    acc = DatasetAccumulator(
        sample=cfg.sample,
        shift_sessions=cfg.shift_sessions,
        judge_sample=cfg.judge_sample if cfg.judge else 0,
        seed=cfg.seed + 1000 * index,
        tokens=tokens,
    )
    counts: dict = {}
    with timer("scan"):
        for d in progress(
            read_dialogues(path, on_error="skip", counts=counts, bad_bytes="raise"),
            desc=f"stats {Path(path).name}",
            unit="session",
        ):
            acc.add(d)
        acc.finish()
    # Inside the scan, the detector and the tokenizer keep their own clocks.
    for name, wall, cpu in [("context_detector", acc.detector_seconds, acc.detector_cpu_seconds)] + (
        [("tokens", tokens.seconds, tokens.cpu_seconds)] if tokens else []
    ):
        timer.seconds[name] = timer.seconds.get(name, 0.0) + wall
        timer.cpu[name] = timer.cpu.get(name, 0.0) + cpu
    if acc.sessions == 0:
        raise ParrotError(f"{path}: no valid Dialogue records (expected JSONL lines with a 'messages' list)")
    return acc, counts


def topic_shifts(sessions: list[list[str]], embedder, threshold: float) -> dict:
    """Shifts per sampled session: t>=2 with cos(q_{t-1}, q_t) < threshold and q_t self-contained."""
    flat = [q for s in sessions for q in s]
    emb = embedder.encode(flat) if flat else np.zeros((0, 1))
    shifts, transitions, pos = [], 0, 0
    for s in sessions:
        e = emb[pos : pos + len(s)]
        pos += len(s)
        n = sum(
            1
            for t, sim in enumerate(consecutive_similarities(e), start=1)
            if sim < threshold and not is_context_dependent(s[t])
        )
        shifts.append(n)
        transitions += max(len(s) - 1, 0)
    return {
        "shifts_per_session": float(np.mean(shifts)) if shifts else None,
        "shift_rate_per_transition": sum(shifts) / transitions if transitions else None,
        "sessions": len(sessions),
        "threshold": threshold,
    }


def real_questions(path: str, size: int, seed: int) -> list[str]:
    if not Path(path).is_file():
        raise ParrotError(f"{path}: --real file not found")
    r = Reservoir(size, seed)
    for d in read_dialogues(path, on_error="skip", bad_bytes="raise"):
        for q in user_questions(d):
            r.add(q[:2000])
    if len(r.items) < 10:
        raise ParrotError(f"{path}: --real holds {len(r.items)} user questions; at least 10 are needed")
    return r.items


def human_likeness(questions: list[str], emb, real, *, same: bool, seed: int) -> dict:
    """How well a classifier tells the dataset's questions from real ones (AUC 0.5: it cannot).
    The real file itself (``same``) is measured as two disjoint halves of its real sample, each
    question on one side only: its own questions against themselves would score below chance."""
    import numpy as np

    from parrot.stats.human import question_features, two_sample_auc

    if same:
        order = np.random.default_rng(seed).permutation(len(real))
        half = len(order) // 2
        return {**two_sample_auc(real[order[half:]], real[order[:half]], seed=seed), "halves": True}
    return two_sample_auc(question_features(questions, emb), real, seed=seed)


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def measure_datasets(cfg: StatsConfig) -> dict:
    from parrot.stats.files import write_files, write_manifests

    cfg.check_inputs()  # fail before loading any model
    names = dataset_names(cfg)
    out_dir = Path(cfg.output)
    # the output's files are made in a staging folder inside it and put in place together at the end:
    # a folder that cannot be written fails now, before any work; a full disk later (or Ctrl-C)
    # leaves the previous output whole and nothing half-written
    with staged_folder(out_dir, unclaim=cfg.side_files()) as staging:
        timer = Timer()
        rows, counts_all, tok_path = measure(cfg, names, timer)
        doc = write_files(cfg, rows, staging, timer, tokenizer_path=tok_path)
    write_manifests(cfg, out_dir, doc["plots"], timer, counts_all)
    print(
        format_table(
            [
                (r["name"], r["sessions"], f"{r['turns_mean']:.2f}", f"{r['context_dependent_per_session']:.2f}")
                for r in rows
            ],
            ("dataset", "sessions", "turns/session", "ctx-dep q/session"),
        )
    )
    print(f"wrote {out_dir / 'stats.md'} and {out_dir / 'stats.json'}")
    return doc


def measure(cfg: StatsConfig, names: list[str], timer: Timer) -> tuple[list[dict], dict, str | None]:
    """Every dataset's row, its counts, and the tokenizer's path."""
    tokenizer = tok_path = None
    with timer("load_tokenizer"):
        if cfg.tokenizer.lower() not in ("none", ""):  # `none`: words only
            tokenizer, tok_path = load_tokenizer(cfg.tokenizer), str(tokenizer_path(cfg.tokenizer))
    embedder = None
    if cfg.embeddings:
        from parrot.stats.embed import Embedder

        if cfg.threads:
            import torch

            torch.set_num_threads(cfg.threads)
        with timer("load_embedder"):
            embedder = Embedder(cfg.embed_model, batch_size=cfg.embed_batch, max_length=cfg.embed_max_tokens)
    real = None
    if embedder and cfg.real:
        from parrot.stats.human import question_features

        with timer("human_likeness"):
            real_texts = real_questions(cfg.real, cfg.sample, cfg.seed + 7)
            real = question_features(real_texts, embedder.encode(real_texts))

    rows, counts_all = [], {}
    for i, (path, name) in enumerate(zip(cfg.data, names)):
        acc, counts = scan(path, cfg, tokenizer, timer, i)
        counts_all[name] = {"sessions": acc.sessions, **counts}
        row = {"name": name, "path": str(path), **acc.summary()}
        questions = acc.question_sample.items
        # a seeded subsample: the reservoir's first slots hold the file's first questions when it is small
        rouge_items = random.Random(cfg.seed).sample(questions, min(len(questions), cfg.rouge_sample))
        with timer("self_rouge"):
            row["self_rouge"] = self_rouge(rouge_items, cfg.rouge_max_tokens)
        row["self_rouge_sample"] = len(rouge_items)
        if embedder:
            from parrot.stats.embed import mean_pairwise_cosine_distance

            with timer("embed_questions"):
                emb = embedder.encode(questions)
            with timer("topic_diversity"):
                row["topic_diversity"] = mean_pairwise_cosine_distance(emb)
            row["topic_diversity_sample"] = len(questions)
            with timer("topic_shifts"):
                row["topic_shifts"] = topic_shifts(acc.session_sample.items, embedder, cfg.shift_threshold)
            if real is not None:
                with timer("human_likeness"):
                    row["human_likeness"] = human_likeness(
                        questions, emb, real, same=_same_file(path, cfg.real), seed=cfg.seed
                    )
        if cfg.judge:
            from parrot.stats.judge import judge_context

            with timer("judge"):
                row["llm_judge"] = judge_context(acc.followup_sample.items, cfg.judge)
        row["sampling"] = {
            "questions_seen": acc.question_sample.seen,
            "question_sample": len(questions),
            "sessions_for_shifts": len(acc.session_sample.items),
            "judge_sample": len(acc.followup_sample.items),
            "seed": cfg.seed + 1000 * i,
        }
        rows.append(row)
        log.info(
            "%s: %d sessions, %.2f turns/session, %.2f context-dependent questions/session",
            name,
            acc.sessions,
            row["turns_mean"] or 0,
            row["context_dependent_per_session"] or 0,
        )
    return rows, counts_all, tok_path
