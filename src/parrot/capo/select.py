"""Pick the turns CaPO builds pairs from: user turns k >= 2 whose question depends on the history.

1. Detector: :func:`parrot.stats.context.context_reasons` on every user turn k >= 2 that has
   a reply (the reply is the pair's *chosen* answer; with ``regenerate_chosen`` a final
   unanswered question is eligible too).
2. Per-session order: the session's candidates are shuffled with a seed made of ``seed`` and the
   session id (so the same input and seed always give the same turns, in any run or shard).
   With ``max_length`` (train-dpo's; ``parrot pipeline`` passes it), a candidate whose pair
   could not fit it even with its history shortened (train-dpo shortens the prompt by the rule
   of :mod:`parrot.core.shorten`; the answers are never cut) is left out first and counted
   ``over_token_budget``: with at least the end of the question, its chosen answer must fit, and
   so must ``room`` tokens for the rejected one (``parrot capo``'s ``max_tokens``).
3. Verifier (optional, ``--verifier SPEC``): walking that order, candidates are asked about in
   batches until ``max_per_session`` are confirmed (``capo_verify.txt``; a reply starting with
   YES confirms). Without a verifier the first ``max_per_session`` are taken.
4. ``max_turns_total`` stops the run once that many turns are selected.

A selected turn, as ``parrot capo select`` writes it (one JSON line)::

    {"id": "<session id>-t3", "source_id": "<session id>", "turn": 3,
     "question": "And the second one?", "reasons": ["ellipsis:and the second one"],
     "verifier": null | {"confirmed": true, "reply": "YES"},
     "prompt": [system?, user, assistant, user, assistant, user],   # ends with turn 3's question
     "answer": "<the session's own reply to turn 3>" | null}
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.backends import BackendConfig, SamplingParams
from parrot.backends.executor import Executor
from parrot.capo.prompts import Prompts
from parrot.core.config import check_ranges, opt
from parrot.core.dialogue import asked_turns, read_dialogues, split_system
from parrot.core.itemloop import ItemFailed, run_items
from parrot.core.jsonl import read_jsonl
from parrot.core.log import format_table
from parrot.core.manifest import write_manifest
from parrot.core.outputs import WritesOutput, failures_path, writes_output
from parrot.core.shorten import shorten
from parrot.core.tokens import count_tokens
from parrot.stats.context import context_reasons

log = logging.getLogger("parrot.capo")

# What the verifier sees: the last few exchanges before the question, each message shortened.
VERIFY_EXCHANGES = 3
VERIFY_CHARS = 600
VERIFY_PARAMS = SamplingParams(temperature=0.0, max_tokens=16)
_YES_NO = re.compile(r"\b(yes|no)\b", re.I)


@dataclass
class SelectConfig(WritesOutput, Executor):
    """``parrot capo select``: the turns CaPO would build pairs from, with the reasons."""

    dialogues: list[Path] = opt(
        help="Dialogue JSONL file(s) (from `parrot synthesize` or `parrot prepare`), read "
        "in order: with max_turns_total the first files fill the selection first",
        digest=True,
    )
    output: Path = opt(help="selected turns, JSONL", flag="-o", hashed=False)
    verifier: BackendConfig | None = opt(
        None, "LLM that confirms each detected turn needs the history (capo_verify.txt); off by default"
    )
    max_per_session: int = opt(3, "at most this many selected turns per session (0: no cap)", min=0)
    max_turns_total: int | None = opt(None, "stop once this many turns are selected in all", min=1)
    regenerate_chosen: bool = opt(
        False, "the chosen answer is generated with the full history instead of taken from the session"
    )
    max_length: int | None = opt(
        None,
        "token budget of a pair (train-dpo's max_length): skip turns whose chosen "
        "answer (and a rejected one of max_tokens) cannot fit it with any history",
        min=16,
    )
    tokenizer: str = opt(
        "smollm2",
        "with max_length: the tokenizer to count with (the model DPO trains: a local directory, or smollm2)",
        digest=True,
    )
    seed: int = opt(0, "seed for which turns fill the per-session cap (and for sampling)", min=0, max=2**32 - 1)
    prompt_dir: Path | None = opt(None, "a directory whose capo_*.txt files replace the packaged prompts", digest=True)

    STAGE: ClassVar[str] = "capo select"
    RECORDS: ClassVar[str] = "selected turns"

    def __post_init__(self):
        check_ranges(self)
        if not self.dialogues:
            raise ParrotError("dialogues: expected one or more Dialogue JSONL files, found none")


def candidate_turns(dialogue: dict, *, need_reply: bool = True) -> list[dict]:
    """The turns k >= 2 of ``dialogue`` that the detector flags, as selection records (in order).

    >>> d = {"id": "s1", "messages": [{"role": "user", "content": "Name two rivers in France."},
    ...      {"role": "assistant", "content": "The Seine and the Loire."},
    ...      {"role": "user", "content": "How long is the second one?"},
    ...      {"role": "assistant", "content": "About 1,000 km."}]}
    >>> [(t["turn"], t["answer"]) for t in candidate_turns(d)]
    [(2, 'About 1,000 km.')]
    """
    system, msgs = split_system(dialogue["messages"])
    head = [system] if system else []
    out = []
    turn = 0
    for i, m in enumerate(msgs):
        if m["role"] != "user":
            continue
        turn += 1
        answer = msgs[i + 1]["content"] if i + 1 < len(msgs) and msgs[i + 1]["role"] == "assistant" else None
        if turn < 2 or (answer is None and need_reply):
            continue
        reasons = context_reasons(m["content"])
        if reasons:
            out.append(
                {
                    "id": f"{dialogue['id']}-t{turn}",
                    "source_id": dialogue["id"],
                    "turn": turn,
                    "question": m["content"],
                    "reasons": reasons,
                    "verifier": None,
                    "prompt": head + msgs[: i + 1],
                    "answer": answer,
                }
            )
    return out


def session_order(candidates: list[dict], seed: int, session_id: str) -> list[dict]:
    """The candidates in the seeded order that decides which fill the per-session cap."""
    order = list(candidates)
    random.Random(f"{seed}:{session_id}").shuffle(order)  # str seeds are stable across runs
    return order


def history_text(prompt: list[dict], exchanges: int = VERIFY_EXCHANGES, chars: int = VERIFY_CHARS) -> str:
    """The turns before the question as ``User: ...`` / ``Assistant: ...`` lines, shortened."""
    _, msgs = split_system(prompt)
    earlier = msgs[:-1][-2 * exchanges :]
    lines = []
    if len(msgs) - 1 > len(earlier):
        lines.append("[... earlier turns left out ...]")
    for m in earlier:
        text = m["content"].strip()
        if len(text) > chars:
            text = text[:chars].rstrip() + " [...]"
        lines.append(f"{m['role'].capitalize()}: {text}")
    return "\n".join(lines)


def parse_verdict(reply: str) -> bool | None:
    """True for YES, False for NO, None when the reply says neither."""
    m = _YES_NO.search(reply or "")
    return None if m is None else m.group(1).lower() == "yes"


class PairBudget:
    """Whether a turn's pair can fit ``max_length`` tokens once train-dpo shortens its history."""

    def __init__(self, max_length: int, tokenizer: str, room: int):
        from parrot.core.tokens import load_tokenizer

        self.max_length, self.room = max_length, room
        self.tokenizer = load_tokenizer(tokenizer, chat_template=True)

    def fits(self, turn: dict) -> bool:
        """train-dpo's test (prompt plus each answer within ``max_length``) on the question alone,
        cut if need be: the chosen answer as it is, the rejected one as ``room`` tokens."""
        answer = [{"role": "assistant", "content": turn["answer"]}] if turn["answer"] is not None else []
        system, _ = split_system(turn["prompt"])
        question = ([system] if system else []) + [turn["prompt"][-1]]

        def fits(msgs: list[dict]) -> bool:
            room = count_tokens(self.tokenizer, msgs, generation_prompt=True) + self.room <= self.max_length
            return room and (not answer or count_tokens(self.tokenizer, msgs + answer) <= self.max_length)

        return shorten(question, fits) is not None


class TurnSelector:
    """Applies the token budget, the per-session cap, the verifier and the total cap; keeps the counts."""

    def __init__(
        self, cfg: SelectConfig, verifier=None, prompts: Prompts | None = None, already: int = 0, room: int = 0
    ):
        self.cfg = cfg
        self.verifier = verifier
        self.prompts = prompts
        self.counts: Counter = Counter()
        self.selected = already  # turns in the output so far (a resumed run starts from them)
        self.budget = PairBudget(cfg.max_length, cfg.tokenizer, room) if cfg.max_length else None

    @property
    def full(self) -> bool:
        return self.cfg.max_turns_total is not None and self.selected >= self.cfg.max_turns_total

    def sessions(self, paths: list[Path], done: set):
        """Stream the inputs' sessions (skipping ``done`` ones); reading stops at the total cap."""
        seen: set = set()
        for path, dialogue in ((p, d) for p in paths for d in read_dialogues(p)):
            if self.full:
                return
            if dialogue["id"] in seen:  # pair ids are built from it and must be unique
                raise ParrotError(
                    f"{path}: session id {dialogue['id']!r} appears more than once (in this file "
                    "or an earlier input); expected unique ids (`parrot prepare` writes them)"
                )
            seen.add(dialogue["id"])
            if dialogue["id"] in done:
                self.counts["sessions_done_before"] += 1
            else:
                yield dialogue

    async def select(self, dialogue: dict) -> list[dict]:
        """The selected turns of one session (the runner's work for one item)."""
        if self.full:  # the runner reads one session ahead of the work
            self.counts["sessions_after_total_cap"] += 1
            return []
        self.counts["sessions"] += 1
        cands = candidate_turns(dialogue, need_reply=not self.cfg.regenerate_chosen)
        self.counts["turns_k2_plus"] += max(0, asked_turns(dialogue["messages"]) - 1)
        self.counts["detector_hits"] += len(cands)
        if self.budget:
            fitting = [t for t in cands if self.budget.fits(t)]
            self.counts["over_token_budget"] += len(cands) - len(fitting)
            cands = fitting
        cap = self.cfg.max_per_session or len(cands)
        order = session_order(cands, self.cfg.seed, dialogue["id"])
        keep = await self._verified(order, cap) if self.verifier else order[:cap]
        if not self.verifier:
            self.counts["over_session_cap"] += len(order) - len(keep)
        if self.cfg.max_turns_total is not None:
            room = max(0, self.cfg.max_turns_total - self.selected)
            self.counts["over_total_cap"] += max(0, len(keep) - room)
            keep = keep[:room]
        self.selected += len(keep)
        return sorted(keep, key=lambda t: t["turn"])

    async def _verified(self, order: list[dict], cap: int) -> list[dict]:
        kept: list[dict] = []
        pos = 0
        while len(kept) < cap and pos < len(order):
            batch = order[pos : pos + cap - len(kept)]
            pos += len(batch)
            convs = [
                self.prompts.user("capo_verify", history=history_text(t["prompt"]), question=t["question"])
                for t in batch
            ]
            params = self.verifier.config.sampling(VERIFY_PARAMS)
            completions = await self.verifier.agenerate(convs, params)
            failed = [(t["id"], c.error) for t, c in zip(batch, completions) if not c.ok]
            if failed:
                # The whole session is retried on --resume; a half-verified session would
                # otherwise fill its cap differently from a clean run.
                self.counts["verifier_failed_sessions"] += 1
                raise ItemFailed("verifier_failed", {"turns": failed})
            for t, c in zip(batch, completions):
                verdict = parse_verdict(c.text)
                self.counts["verifier_calls"] += 1
                if verdict is None:
                    self.counts["verifier_unclear"] += 1
                elif not verdict:
                    self.counts["verifier_rejected"] += 1
                else:
                    kept.append({**t, "verifier": {"confirmed": True, "reply": c.text.strip()[:200]}})
        self.counts["not_verified_over_cap"] += len(order) - pos
        return kept


def select_turns(cfg: SelectConfig, output: Path, *, room: int = 0) -> dict:
    """Write the selected turns of ``cfg.dialogues`` to ``output``, after the rule for an existing
    output was applied (what is there is continued); return the counts. ``room``: tokens a pair
    needs besides the chosen answer (the rejected one), for ``max_length``."""
    started = time.monotonic()
    done: set = set()
    already = 0
    if Path(output).exists():
        for _, rec in read_jsonl(output, on_error="skip"):
            done.add(rec.get("source_id"))
            already += 1
    write_manifest(cfg, of=output, complete=False)
    verifier = cfg.load_backend(cfg.verifier) if cfg.verifier else None
    prompts = Prompts(cfg.prompt_dir, names=("capo_verify",)) if verifier else None
    selector = TurnSelector(cfg, verifier, prompts, already=already, room=room)
    try:
        if verifier:
            verifier.start()
        concurrency = verifier.config.concurrency * verifier.copies if verifier else 1
        run = run_items(
            selector.sessions(cfg.dialogues, done),
            selector.select,
            output=output,
            key=lambda d: d["id"],
            concurrency=concurrency,
            desc="capo select",
            unit="session",
        )
    finally:
        if verifier:
            verifier.close()
    counts = dict(selector.counts)
    counts.update(
        {
            "selected_this_run": run.get("written", 0),
            "selected_total": selector.selected,
            "sessions_failed": run.get("failed", 0),
        }
    )
    extra = {
        "verifier": verifier.describe() if verifier else None,
        "verifier_usage": verifier.usage.to_dict() if verifier else None,
    }
    write_manifest(
        cfg,
        of=output,
        counts=counts,
        timings={"seconds": round(time.monotonic() - started, 3)},
        sampling={"verifier": verifier.config.sampling(VERIFY_PARAMS).to_dict()} if verifier else {},
        complete=not counts["sessions_failed"],
        **extra,
    )  # failed sessions: --resume retries them
    return counts


def selection_table(counts: dict) -> str:
    keys = (
        "sessions",
        "turns_k2_plus",
        "detector_hits",
        "over_token_budget",
        "verifier_rejected",
        "verifier_unclear",
        "over_session_cap",
        "over_total_cap",
        "selected_total",
        "sessions_failed",
    )
    return format_table([(k, counts.get(k, 0)) for k in keys if k in counts or k in keys[:3]], ("selection", "count"))


@writes_output
def capo_select(cfg: SelectConfig) -> dict:
    """``parrot capo select``: write the selected turns with their reasons (JSONL)."""
    counts = select_turns(cfg, cfg.output)
    print(selection_table(counts))
    if counts.get("sessions_failed"):
        log.warning(
            "%d session(s) failed verification; see %s (rerun with --resume to retry them)",
            counts["sessions_failed"],
            failures_path(cfg.output),
        )
    log.info("wrote %d selected turns to %s", counts["selected_total"], cfg.output)
    return counts
