"""``parrot capo``: context-aware preference pairs for DPO.

Selects turns (:mod:`parrot.capo.select`, written to ``<output>.selection.jsonl``), then for each
selected turn and each strategy (:mod:`parrot.capo.negatives`) writes one pair in TRL's
conversational preference format::

    {"id": "<session id>-t3-ignore",
     "prompt": [..., {"role": "user", "content": "<turn 3's question>"}],
     "chosen": [{"role": "assistant", "content": "<the session's answer>"}],
     "rejected": [{"role": "assistant", "content": "<the generator's wrong answer>"}],
     "meta": {"strategy": "ignore", "source_id": "<session id>", "turn": 3, "reasons": [...],
              "chosen_from": "session", "similarity": 0.12, "generator": "smollm2",
              "guess": ... (hallucinate), "misunderstood_turn": 1, "span": ... (misunderstand)}}

A pair is discarded when the generator failed (``generator_failed``; with
``--regenerate-chosen`` also ``chosen_failed``) or when rejected and chosen are near-identical
(:func:`~parrot.capo.negatives.similarity` >= ``similarity_threshold``). Discards go to
``<output>.failures.jsonl`` with the reason and strategy. Ids are stable, so ``--resume`` never
writes a pair twice: it retries failed generations and skips pairs already written or discarded
as near-identical.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.backends import BackendConfig, SamplingParams
from parrot.capo.negatives import STRATEGIES, WRITERS, similarity, unrelated_turn
from parrot.capo.prompts import Prompts
from parrot.capo.select import SelectConfig, select_turns, selection_table
from parrot.core.config import opt
from parrot.core.fingerprint import config_hash
from parrot.core.itemloop import ItemFailed, done_keys, run_items
from parrot.core.jsonl import read_jsonl
from parrot.core.log import format_table
from parrot.core.manifest import manifest_path, write_manifest
from parrot.core.outputs import begin, failures_path, writes_output

log = logging.getLogger("parrot.capo")

# Discards that a rerun would only repeat: --resume does not try these pairs again.
FINAL_DISCARDS = ("near_identical",)
# What PairWriter.plan gives instead of a pair id for a pair that is not attempted.
SKIPS = ("already_done", "no_unrelated_turn")


@dataclass
class CapoConfig(SelectConfig):
    """``parrot capo``: preference pairs from context-dependent turns and three kinds of wrong answer."""

    output: Path = opt(help="preference pairs, JSONL (TRL's conversational preference format)", flag="-o", hashed=False)
    generator: BackendConfig = opt(
        BackendConfig, "model that writes the rejected answers (and the chosen ones with --regenerate-chosen)"
    )
    strategies: list[str] = opt(lambda: list(STRATEGIES), "negative strategies to use", choices=list(STRATEGIES))
    similarity_threshold: float = opt(
        0.9,
        "discard a pair when similarity(rejected, chosen) (word-level difflib ratio) is at least this",
        above=0,
        max=1,
    )
    temperature: float = opt(0.7, "sampling temperature for the generator", min=0)
    max_tokens: int = opt(512, "maximum new tokens of an answer", min=1)
    guess_max_tokens: int = opt(48, "maximum new tokens of a hallucination guess", min=1)

    STAGE: ClassVar[str] = "capo"
    RECORDS: ClassVar[str] = "pairs"

    def output_files(self) -> list[Path]:
        return [Path(self.output), selection_path(self.output)]

    def side_files(self) -> list[Path]:
        sel = selection_path(self.output)
        return [*super().side_files(), manifest_path(sel), failures_path(sel)]

    def check_inputs(self) -> None:
        Prompts(self.prompt_dir)  # a broken prompt override fails before anything is removed

    def __post_init__(self):
        super().__post_init__()
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise ParrotError(f"strategies: expected some of {', '.join(STRATEGIES)}, found {self.strategies}")
        self.strategies = [s for s in STRATEGIES if s in self.strategies]  # canonical order, no repeats


def selection_path(output: Path) -> Path:
    return Path(output).with_name(Path(output).name + ".selection.jsonl")


def pair_seed(seed: int, pair_id: str) -> int:
    """A per-pair sampling seed: the same pair gets the same seed in every run."""
    return (seed * 1_000_003 + int(hashlib.sha256(pair_id.encode()).hexdigest()[:8], 16)) % (2**31)


def discarded_keys(output: Path) -> set:
    """Pair ids an earlier run discarded for good (near-identical), from its failures file."""
    path = failures_path(output)
    if not path.exists():
        return set()
    return {r.get("key") for _, r in read_jsonl(path, on_error="skip") if r.get("reason") in FINAL_DISCARDS}


def run_selection(cfg: CapoConfig) -> dict:
    """Write ``<output>.selection.jsonl``, or continue the one an interrupted run left (a
    complete one is reused). Runs under the capo run's lock, after its rule: a capo run that
    starts over has removed the selection."""
    path = selection_path(cfg.output)
    names = {f.name for f in dataclasses.fields(SelectConfig)}
    sel_cfg = SelectConfig(
        **{n: getattr(cfg, n) for n in names if n not in ("output", "resume", "force", "overwrite")},
        output=path,
        resume=True,
        force=cfg.force,
    )
    start = begin(sel_cfg)
    old = start.manifest or {}
    if start.how == "continue" and old.get("complete") and old.get("config_hash") == config_hash(sel_cfg):
        log.info("reusing the selection in %s", path)
        return old.get("counts", {})
    return select_turns(sel_cfg, path, room=cfg.max_tokens)


class PairWriter:
    """The runner's work for one (turn, strategy) item, with the per-strategy tallies."""

    def __init__(self, cfg: CapoConfig, generator, prompts: Prompts):
        self.cfg = cfg
        self.gen = generator
        self.prompts = prompts
        self.tally: dict[str, Counter] = defaultdict(Counter)
        self.base = generator.config.sampling(SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens))
        self._chosen: dict[str, asyncio.Future] = {}  # turn id -> regenerated chosen answer
        self._waiting: Counter = Counter()  # turn id -> items still to use it

    def params(self, key: str, **changes) -> SamplingParams:
        """Sampling for one call: a seed of its own per pair (unless the generator's seed is set),
        so a retried pair samples the same way and two pairs never share their draws."""
        seed = self.base.seed if self.gen.config.seed is not None else pair_seed(self.cfg.seed, key)
        return self.base.replace(seed=seed, **changes)

    def seed_note(self) -> dict:
        if self.gen.config.seed is None:
            return {"seed": f"per pair: sha256 of the pair id mixed with seed {self.cfg.seed}"}
        return {}

    def plan(self, turn: dict, done: set) -> list[tuple[str, str]]:
        """``(strategy, pair id)`` still to write for ``turn``, or the reason it is not."""
        out = []
        for s in self.cfg.strategies:
            pid = f"{turn['id']}-{s}"
            if pid in done:
                out.append((s, "already_done"))
            elif s == "misunderstand" and unrelated_turn(turn, self.cfg.seed) is None:
                out.append((s, "no_unrelated_turn"))
            else:
                out.append((s, pid))
        return out

    def count_pending(self, selection: Path, done: set) -> int:
        """How many items :meth:`items` will yield (for the progress bar's ETA)."""
        return sum(1 for _, turn in read_jsonl(selection) for _, p in self.plan(turn, done) if p not in SKIPS)

    def items(self, selection: Path, done: set):
        """``(turn, strategy, pair id)`` for every pair still to write, turn by turn."""
        for _, turn in read_jsonl(selection):
            pending = []
            for s, pid in self.plan(turn, done):
                if pid in SKIPS:
                    self.tally[s][pid] += 1
                else:
                    pending.append((turn, s, pid))
            self._waiting[turn["id"]] += len(pending)
            yield from pending

    async def chosen(self, turn: dict) -> tuple[str, str]:
        if not self.cfg.regenerate_chosen:
            return turn["answer"], "session"
        tid = turn["id"]
        if tid not in self._chosen:  # one generation per turn, shared by its strategies
            self._chosen[tid] = asyncio.ensure_future(self._regenerate(turn))
        try:
            return await asyncio.shield(self._chosen[tid]), "generator"
        finally:
            self._waiting[tid] -= 1
            if self._waiting[tid] <= 0:
                self._chosen.pop(tid, None)
                del self._waiting[tid]

    async def _regenerate(self, turn: dict) -> str:
        [c] = await self.gen.agenerate([turn["prompt"]], self.params(f"{turn['id']}-chosen"))
        if not c.ok or not c.text.strip():
            raise ItemFailed("chosen_failed", {"error": c.error or "empty reply"})
        return c.text.strip()

    async def __call__(self, item) -> dict:
        turn, strategy, pid = item
        try:
            chosen, chosen_from = await self.chosen(turn)
            kwargs = (
                {"guess_params": self.params(pid, max_tokens=self.cfg.guess_max_tokens)}
                if strategy == "hallucinate"
                else {}
            )
            rejected, extra = await WRITERS[strategy](
                self.gen, self.prompts, turn, self.params(pid), self.cfg.seed, **kwargs
            )
        except ItemFailed as e:  # a fresh one: a failed chosen answer is shared by the turn's items
            self.tally[strategy][e.reason] += 1
            raise ItemFailed(e.reason, {**(e.detail or {}), "strategy": strategy, "turn_id": turn["id"]}) from None
        sim = similarity(chosen, rejected)
        if sim >= self.cfg.similarity_threshold:
            self.tally[strategy]["near_identical"] += 1
            raise ItemFailed(
                "near_identical",
                {"strategy": strategy, "turn_id": turn["id"], "similarity": round(sim, 4), "rejected": rejected[:500]},
            )
        self.tally[strategy]["written"] += 1
        return {
            "id": pid,
            "prompt": turn["prompt"],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "meta": {
                "strategy": strategy,
                "source_id": turn["source_id"],
                "turn": turn["turn"],
                "reasons": turn["reasons"],
                "chosen_from": chosen_from,
                "similarity": round(sim, 4),
                "generator": self.gen.model_name,
                **extra,
            },
        }


def pairs_by_strategy(output: Path) -> dict[str, int]:
    """How many pairs of each strategy ``output`` holds (after any number of resumed runs)."""
    counts: Counter = Counter()
    if Path(output).exists():
        for _, r in read_jsonl(output, on_error="skip"):
            counts[(r.get("meta") or {}).get("strategy")] += 1
    return dict(counts)


def pairs_table(tally: dict[str, Counter], in_output: dict[str, int]) -> str:
    reasons = sorted({r for c in tally.values() for r in c} - {"written"})
    rows = [
        (s, tally[s]["written"], *(tally[s][r] for r in reasons), in_output.get(s, 0))
        for s in STRATEGIES
        if s in tally or s in in_output
    ]
    return format_table(rows, ("strategy", "written", *reasons, "in file"))


def no_pairs(cfg: CapoConfig, selection: dict, discarded: dict) -> ParrotError:
    """Why the run has no pair to train on, and what would change it."""
    if not selection.get("sessions"):
        why, fix = "no sessions to select from", "the filter stage kept none"
    elif not selection.get("detector_hits"):
        why = f"none of the {selection.get('turns_k2_plus', 0)} questions from turn 2 on depends on the history"
        fix = "synthesize more or longer sessions (synthesize: num_sessions, max_turns)"
    elif not selection.get("selected_total"):
        why = (
            f"{selection['detector_hits']} context-dependent turns, none selected "
            f"({selection.get('over_token_budget', 0)} over the token budget, "
            f"{selection.get('verifier_rejected', 0)} rejected by the verifier)"
        )
        fix = (
            f"raise max_length={cfg.max_length} (train-dpo's) or lower max_tokens={cfg.max_tokens}"
            if selection.get("over_token_budget")
            else "check the verifier, or run without it"
        )
    else:
        why = f"{selection['selected_total']} turns selected, every pair discarded ({discarded})"
        fix = (
            "lower similarity_threshold"
            if "near_identical" in discarded
            else "see the failures file; rerun with --resume to retry failed generations"
        )
    return ParrotError(f"capo wrote 0 pairs to {cfg.output}: {why}; {fix}")


@writes_output
def capo(cfg: CapoConfig) -> dict:
    """``parrot capo``: select turns, write the negatives, keep the pairs. Returns the counts."""
    started = time.monotonic()
    prompts = Prompts(cfg.prompt_dir)  # a broken prompt override fails before any work
    sel_counts = run_selection(cfg)
    print(selection_table(sel_counts))
    done = done_keys(cfg.output, "id") | discarded_keys(cfg.output)  # none when it starts over
    t_select = time.monotonic() - started
    with cfg.load_backend(cfg.generator) as gen:
        writer = PairWriter(cfg, gen, prompts)
        concurrency = max(gen.config.concurrency, gen.config.batch_size if gen.micro_batched else 1) * gen.copies
        sel = selection_path(cfg.output)
        run = run_items(
            writer.items(sel, done),
            writer,
            output=cfg.output,
            key=lambda item: item[2],
            concurrency=concurrency,
            desc="capo pairs",
            unit="pair",
            total=writer.count_pending(sel, done),
            final_reasons=FINAL_DISCARDS,
        )
        usage, described = gen.usage.to_dict(), gen.describe()
    in_output = pairs_by_strategy(cfg.output)
    tally = {s: dict(writer.tally[s]) for s in cfg.strategies}
    counts = {
        "selection": sel_counts,
        "this_run": tally,
        "written": run.get("written", 0),
        "discarded": run.get("failed", 0),
        "discarded_by_reason": {k.split(":", 1)[1]: v for k, v in run.items() if k.startswith("failed:")},
        "pairs_in_output": in_output,
        "pairs_total": sum(in_output.values()),
    }
    write_manifest(
        cfg,
        counts=counts,
        timings={"select_seconds": round(t_select, 3), "total_seconds": round(time.monotonic() - started, 3)},
        sampling={"answer": writer.params("").to_dict() | writer.seed_note(), "guess_max_tokens": cfg.guess_max_tokens},
        generator=described,
        generator_usage=usage,
        selection=str(selection_path(cfg.output)),
        # generator failures are retried by --resume (and by the pipeline): not done yet
        complete=counts["pairs_total"] > 0
        and not any(v for k, v in run.items() if k.startswith("failed:") and k.split(":", 1)[1] not in FINAL_DISCARDS),
    )
    print(pairs_table(writer.tally, in_output))
    if not counts["pairs_total"]:
        raise no_pairs(cfg, sel_counts, counts["discarded_by_reason"])
    if run.get("failed"):
        log.info("%d pair(s) discarded, with reasons, in %s", run["failed"], failures_path(cfg.output))
    log.info("%s: %d pairs (%d written in this run)", cfg.output, counts["pairs_total"], counts["written"])
    return counts
