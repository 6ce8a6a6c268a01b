"""``parrot synthesize``: a user simulator talks with an assistant model, session by session.

A session starts from a seed: a real first question (``--seeds``, a Dialogue file) or a topic
(``--topics``, one per line; the simulator then writes the first question). Then, turn after
turn, the assistant answers and the simulator (the *asker*) asks the next question, until
``--max-turns`` answers, the simulator's stop marker (not accepted before ``--min-turns``
answers), or a degenerate question still degenerate after ``--max-redraws`` draws (the guardrails:
:mod:`parrot.synthesize.session`). Each record is a Dialogue whose ``meta`` holds the end reason,
the redraws by reason and both models' specs and sampling parameters.

Durability. Finished sessions are appended (flush + fsync) to the output; every accepted
message of a session in flight is appended to ``<out>.inflight.jsonl`` (a journal), so a crash
loses at most the calls being generated. ``--resume`` rebuilds sessions in flight from the
journal and skips ids already in the output: after any SIGKILL the finished file holds each
session index once. Session ids come from (run seed, index), so shards never collide.

Failures. A failed call (the backend's own retries exhausted) is retried ``step_retries`` more
times later in the run; then the session ends with reason ``assistant_failed``/``asker_failed``
and keeps its complete turns. A session with no complete turn is not written: it goes to
``<out>.failures.jsonl``, the command exits with an error, and ``--resume`` retries it.

Scheduling. With a micro-batched backend (hf, vllm) the loop is turn-synchronous: every live
session asks in one batch, then every live session is answered in one batch. With HTTP backends
each session runs as its own coroutine, ``in_flight`` sessions at a time. With ``--executor ray``
the in-process models run as replicas on a Ray cluster (:mod:`parrot.backends.ray_pool`) and the
default window grows with them; the loop, the journal and the output stay in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.backends import Backend, BackendConfig
from parrot.backends.executor import Executor
from parrot.core.config import opt, to_dict
from parrot.core.dialogue import read_dialogues, user_questions
from parrot.core.digest import describe
from parrot.core.jsonl import AppendWriter, read_jsonl
from parrot.core.log import format_table, progress
from parrot.core.manifest import write_manifest
from parrot.core.outputs import WritesOutput, failures_path, failures_writer, settle_failures, writes_output
from parrot.synthesize.journal import journal_path, restore_sessions
from parrot.synthesize.loops import run_batched, run_concurrent
from parrot.synthesize.session import SessionRules, session_id
from parrot.synthesize.writer import SessionWriter

log = logging.getLogger("parrot.synthesize")


@dataclass
class SynthesizeConfig(WritesOutput, Executor):
    output: str = opt(help="output Dialogue JSONL (sessions are appended as they finish)", flag="-o", hashed=False)
    asker: BackendConfig = opt(
        BackendConfig,
        "the user simulator's model (trained Parrot-Ask, or any instruct model with --asker-mode prompted)",
    )
    assistant: BackendConfig = opt(BackendConfig, "the assistant's model")
    asker_mode: str = opt(
        "trained",
        "trained: the role-swapped Parrot-Ask prompt; prompted: an instruct model told to play a user (self-chat baseline)",
        choices=["trained", "prompted"],
    )
    seeds: str | None = opt(None, "Dialogue JSONL whose first user questions open the sessions", digest=True)
    topics: str | None = opt(None, "text file, one topic per line: the simulator writes question 1", digest=True)
    max_seed_chars: int = opt(
        2000,
        "skip seed questions longer than this (pasted documents overflow small models' context); 0: no limit",
        min=0,
    )
    num_sessions: int = opt(100, "sessions in the whole run (all shards together)", min=1)
    max_turns: int = opt(10, "maximum assistant answers per session", min=1)
    min_turns: int = opt(
        2,
        "the simulator's stop marker is not accepted before this many answers (banned at sampling "
        "where the engine can, else drawn again); at or above max_turns, every session runs to max_turns",
        min=1,
    )
    max_redraws: int = opt(
        3, "a degenerate question or an early stop is drawn again up to this many times before the session ends", min=0
    )
    min_question_words: int = opt(2, "a simulator question with fewer words is drawn again (too_short)", min=1)
    max_question_words: int = opt(
        300, "a simulator question with more words is drawn again (too_long); 0: no bound", min=0
    )
    seed: int = opt(0, "run seed: seed choice, sampling seeds and session ids derive from it", min=0, max=2**32 - 1)
    system_prompt: str | None = opt(None, "system message for the assistant (kept as the Dialogue's first message)")
    prompted_prompt: str | None = opt(
        None, "file with the prompted simulator's system prompt (default: the built-in one)", digest=True
    )
    shard: str | None = opt(None, "i/n: run only the session indices i, i+n, i+2n, ... (0-based)", selects=True)
    in_flight: int | None = opt(
        None, "sessions in progress at once (default: the backends' batch size or concurrency)", hashed=False, min=1
    )
    step_retries: int = opt(
        2, "extra tries of a failed call, later in the run, before the session ends", hashed=False, min=0
    )
    step_retry_delay: float = opt(
        30.0,
        "seconds before a failed call is tried again, doubling with each "
        "try (HTTP backends: rides out an endpoint's outage)",
        hashed=False,
        min=0,
    )
    id_prefix: str = opt("synth", "session ids are PREFIX-sSEED-INDEX")

    STAGE: ClassVar[str] = "synthesize"
    RECORDS: ClassVar[str] = "sessions"

    def output_files(self) -> list[Path]:
        return [Path(self.output), journal_path(self.output)]

    def check_inputs(self) -> None:
        if self.max_question_words and self.max_question_words < self.min_question_words:
            raise ParrotError(
                f"max_question_words={self.max_question_words} is below min_question_words="
                f"{self.min_question_words}: every question would be drawn again"
            )
        input_files(self)

    def manifest_sections(self) -> dict:
        """A shard's place in its run, which `parrot merge` checks, from the run's start on."""
        i, n = parse_shard(self.shard)
        indices = shard_indices(self.num_sessions, self.shard)
        return {"shard": {"index": i, "of": n}, "num_sessions": self.num_sessions, "expected_sessions": len(indices)}


# ---------------------------------------------------------------- paths, ids, seeds


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``; None -> ``(0, 1)``."""
    if not shard:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ParrotError(f"--shard: expected i/n with 0 <= i < n (e.g. 0/4), found {shard!r}")
    return int(m.group(1)), int(m.group(2))


def shard_indices(num_sessions: int, shard: str | None) -> list[int]:
    i, n = parse_shard(shard)
    return list(range(i, num_sessions, n))


def input_files(cfg: SynthesizeConfig) -> dict[str, dict]:
    """The run's seed, topic and prompt files (the fields whose contents its fingerprint covers),
    described (hashed) for the manifests. A missing one is an error before any model loads or any
    file is written."""
    files = {}
    for f in dataclasses.fields(cfg):
        path = getattr(cfg, f.name) if f.metadata.get("digest") else None
        if path and not Path(path).is_file():
            raise ParrotError(f"--{f.name.replace('_', '-')} {path}: file not found")
        if path:
            files[f.name] = describe(path)
    return files


def load_seed_pool(cfg: SynthesizeConfig, counts: Counter) -> list[dict]:
    """Seeds as ``{"kind": "question"|"topic", "text", "source"}``, in a seeded random order."""
    pool: list[dict] = []
    if cfg.seeds:
        for d in read_dialogues(cfg.seeds, on_error="skip", counts=counts):
            qs = user_questions(d)
            if not qs or not qs[0].strip():
                continue
            if cfg.max_seed_chars and len(qs[0]) > cfg.max_seed_chars:
                counts["skipped_long_seed"] += 1
                continue
            pool.append({"kind": "question", "text": qs[0], "source": d["id"]})
    if cfg.topics:
        path = Path(cfg.topics)
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                pool.append({"kind": "topic", "text": line.strip(), "source": f"{path.name}:{lineno}"})
    if not pool:
        where = " and ".join(x for x in (cfg.seeds, cfg.topics) if x)
        raise ParrotError(
            f"{where or 'synthesize'}: no seeds: pass --seeds FILE (Dialogue JSONL with user "
            f"questions) and/or --topics FILE (one topic per line)"
        )
    random.Random(cfg.seed).shuffle(pool)
    return pool


# ---------------------------------------------------------------- the command


def same_server(a: BackendConfig, b: BackendConfig) -> bool:
    """Both roles on one in-process model (hf, vllm): load it once. Servers (gguf, openai) are
    not shared: a llama.cpp slot keeps one prompt's cache, and a session's asker and assistant
    views differ, so one server for both roles would re-read every prompt from the start."""
    if not a.model_spec.micro_batched:
        return False
    skip = {"temperature", "top_p", "max_tokens", "seed"}
    da, db = to_dict(a), to_dict(b)
    return {k: v for k, v in da.items() if k not in skip} == {k: v for k, v in db.items() if k not in skip}


@writes_output
def synthesize(cfg: SynthesizeConfig, *, asker=None, assistant=None) -> dict:
    """Run (or resume) a synthesis run; return its counts.

    ``asker``/``assistant`` are ready Backend objects to use instead of loading ``cfg.asker`` /
    ``cfg.assistant`` (a library caller wrapping a backend, the efficiency benchmark).
    """
    out = Path(cfg.output)
    inputs = list(input_files(cfg).values())  # the ranges were checked by @writes_output
    started_wall = time.time()
    read_counts: Counter = Counter()
    pool = load_seed_pool(cfg, read_counts)
    indices = shard_indices(cfg.num_sessions, cfg.shard)
    wanted = {session_id(cfg.id_prefix, cfg.seed, i): i for i in indices}
    done_ids = {r.get("id") for _, r in read_jsonl(out, on_error="skip")} if out.exists() else set()
    done = {wanted[x] for x in done_ids if x in wanted}

    jpath = journal_path(out)
    to_run = [i for i in indices if i not in done]
    shared = asker is None and assistant is None and same_server(cfg.asker, cfg.assistant)
    loaded = 1 if shared else cfg.asker.model_spec.in_process + cfg.assistant.model_spec.in_process
    asker_backend = asker or cfg.load_backend(cfg.asker, models=loaded)
    assistant_backend = asker_backend if shared else (assistant or cfg.load_backend(cfg.assistant, models=loaded))
    shared = shared or asker_backend is assistant_backend
    models = {"asker": asker_backend, "assistant": assistant_backend}
    t0 = time.monotonic()
    with (
        asker_backend,
        contextlib.nullcontext() if shared else assistant_backend,
        AppendWriter(out) as output,
        failures_writer(out) as failures,
    ):
        rules = SessionRules(cfg)
        seed_for = lambda i: pool[i % len(pool)]  # noqa: E731 - the pool is shuffled by the run seed
        restored = restore_sessions(jpath, to_run, lambda i: rules.open(i, seed_for(i)))
        with (
            AppendWriter(jpath, fsync=False) as journal,
            progress(total=len(indices), initial=len(done), desc="synthesize", unit="session") as bar,
        ):
            writer = SessionWriter(output, journal, failures, bar)
            # Built lazily: a million-session run holds only the live window in memory.
            queue = (restored.get(i) or rules.open(i, seed_for(i)) for i in to_run)
            batched = asker_backend.micro_batched or assistant_backend.micro_batched
            window = cfg.in_flight or _default_window(cfg, batched, asker_backend, assistant_backend)
            log.info(
                "%d sessions to run (%d already done, %d restored from the journal), %s loop, %d in flight",
                len(to_run),
                len(done),
                len(restored),
                "batched" if batched else "concurrent",
                window,
            )
            if cfg.min_turns > 1 and not asker_backend.bans:
                log.info(
                    "%s cannot ban the stop marker at sampling: before %d answers a stop is drawn again",
                    cfg.asker.spec,
                    cfg.min_turns,
                )
            run = run_batched if batched else run_concurrent
            asyncio.run(run(queue, window, rules, writer, models))
        usage = {**{role: m.usage.to_dict() for role, m in models.items()}, "shared_backend": shared}
        described = {role: m.describe() for role, m in models.items()}
    seconds = time.monotonic() - t0
    counts, in_output = summarize_output(out, set(wanted))
    settle_failures(out, lambda r: r.get("id") in in_output, key="id")  # sessions now written are settled
    counts.update(writer.counts)
    counts.update({f"seeds:{k}": v for k, v in read_counts.items()})
    counts["seed_pool"] = len(pool)
    complete = counts["sessions"] == len(indices)
    if complete:
        jpath.unlink(missing_ok=True)
    timings = {
        "seconds": round(seconds, 3),
        "turns": writer.turns,
        "completion_tokens": writer.tokens,
        "turns_per_s": round(writer.turns / max(seconds, 1e-9), 3),
        "tokens_per_s": round(writer.tokens / max(seconds, 1e-9), 2),
        "started": started_wall,
    }
    write_manifest(
        cfg,
        inputs=inputs,
        counts=dict(counts),
        timings=timings,
        sampling={role: params.to_dict() for role, params in rules.params.items()},
        complete=complete,
        usage=usage,
        models=described,
        guardrails={"stop_banned_at_sampling": asker_backend.bans},
        **cfg.manifest_sections(),
    )
    print_summary(out, counts, timings, len(indices))
    if not complete:
        missing = len(indices) - counts["sessions"]
        raise ParrotError(
            f"{out}: {missing} of {len(indices)} sessions failed with no complete turn "
            f"(reasons in {failures_path(out)}); rerun with --resume to retry them"
        )
    return dict(counts)


def _default_window(cfg: SynthesizeConfig, batched: bool, asker: Backend, assistant: Backend) -> int:
    """Micro-batched: a full batch per role (per replica, on Ray). Servers: as many sessions as the
    narrower role serves at once (a llama.cpp server's slots), so each session keeps its slot and
    its prompt cache."""
    if batched:
        return max(cfg.asker.batch_size * asker.copies, cfg.assistant.batch_size * assistant.copies)

    def parallel(role: BackendConfig, backend: Backend) -> int:
        gguf = role.model_spec.kind == "gguf"
        return (role.slots if gguf else role.concurrency) * backend.copies

    return min(parallel(cfg.asker, asker), parallel(cfg.assistant, assistant))


def summarize_output(out: Path, wanted: set[str]) -> tuple[Counter, set[str]]:
    """Counts over the whole output file (this run and the runs it resumed), and the ids in it."""
    counts: Counter = Counter()
    seen: set[str] = set()
    for _, r in read_jsonl(out, on_error="skip"):
        rid = r.get("id")
        if rid in seen:
            counts["duplicate_ids"] += 1
            continue
        seen.add(rid)
        if rid not in wanted:
            counts["foreign_ids"] += 1
            continue
        meta = r.get("meta") or {}
        counts["sessions"] += 1
        counts["turns"] += meta.get("turns", 0)
        counts[f"end_reason:{meta.get('end_reason')}"] += 1
        for reason, n in (meta.get("redraws") or {}).items():
            counts[f"redraw:{reason}"] += n
    counts.setdefault("sessions", 0)
    return counts, seen


def print_summary(out: Path, counts: Counter, timings: dict, expected: int) -> None:
    n = counts["sessions"]
    rows = [
        ("sessions", f"{n}/{expected}"),
        ("turns", counts["turns"]),
        ("turns per session", f"{counts['turns'] / n:.2f}" if n else "-"),
    ]
    rows += sorted(
        (k, v)
        for k, v in counts.items()
        if k.startswith(("end_reason:", "redraw:", "sessions_failed", "call_failed", "calls_shortened"))
    )
    rows += [
        ("seconds (this run)", timings["seconds"]),
        ("turns/s", timings["turns_per_s"]),
        ("tokens/s", timings["tokens_per_s"]),
    ]
    print(f"parrot synthesize: {out}")
    print(format_table(rows, ("", "value")))
