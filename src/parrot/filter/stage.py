"""``parrot filter IN -o OUT``: clean synthesized sessions before training on them.

Per question (every user turn, in order), the first rule that fires decides:

- ``too_short``: fewer than ``min_question_words`` words (a Chinese or Japanese character is one) or
  ``min_question_chars`` characters.
- ``repetitive``: the share of the question's word n-grams (``ngram``, default 3) found in one
  earlier question of the session is at least ``max_overlap``.
- ``role_confused``: the simulator answered instead of asking (heuristics, below).
- ``sensitive``: a term of the sensitive-content list (``--sensitive-terms FILE``, default the
  package's ``data/sensitive_terms.txt``; ``--no-sensitive`` turns the check off) occurs,
  case-insensitively, on word boundaries.

With ``on_bad_question=cut`` (default) the session is cut just before the first bad question;
with ``drop`` the whole session goes. Then sessions with fewer than ``min_turns`` turns are
dropped (``too_few_turns``), and near-duplicate sessions across the dataset (MinHash LSH over
word shingles of the session's questions, Jaccard >= ``near_duplicate``) keep only their first
occurrence (``near_duplicate``). Every drop and cut is counted by reason in the manifest and
in the printed summary.

Role confusion. A user simulator that slips into the assistant's role writes text like an
answer. Two signs, either enough:

1. it reads like an answer: an assistant's opening or boilerplate
   (:func:`parrot.core.questions.reads_like_answer`, the rule ``parrot synthesize`` redraws by);
2. it is long (>= 20 words) and most of its n-grams (>= ``max_overlap``) come from the answer
   just before it: the simulator restating the assistant.

Words are counted as :func:`parrot.core.questions.words` counts them.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.core.config import check_ranges, opt
from parrot.core.dialogue import answered_turns, asked_turns, read_dialogues
from parrot.core.jsonl import AtomicWriter
from parrot.core.log import format_table, progress
from parrot.core.manifest import read_manifest, write_manifest
from parrot.core.outputs import ONE_PASS, WritesOutput, writes_output
from parrot.core.questions import ngrams, overlap, reads_like_answer, words

log = logging.getLogger("parrot.filter")

DEFAULT_TERMS = Path(__file__).resolve().parent.parent / "data" / "sensitive_terms.txt"


@dataclass
class FilterConfig(WritesOutput):
    input: str = opt(help="Dialogue JSONL (e.g. synthesize's output)", positional=True, digest=True)
    output: str = opt(help="filtered Dialogue JSONL", flag="-o", hashed=False)
    min_turns: int = opt(2, "drop sessions with fewer turns (after cuts)", min=1)
    on_bad_question: str = opt(
        "cut", "cut the session before a bad question, or drop the session", choices=["cut", "drop"]
    )
    min_question_words: int = opt(2, "a question with fewer words is too short", min=0)
    min_question_chars: int = opt(6, "a question with fewer characters is too short", min=0)
    ngram: int = opt(3, "word n-gram size for the repetition and echo checks", min=1)
    max_overlap: float = opt(
        0.7, "share of a question's n-grams seen in one earlier question that makes it repetitive", above=0, max=1
    )
    role_confusion: bool = opt(True, "cut at questions that read like an assistant's answer")
    sensitive: bool = opt(True, "cut at questions holding a term of the sensitive-content list")
    sensitive_terms: str | None = opt(
        None, "sensitive-content list, one term per line (default: the built-in list)", digest=True
    )
    near_duplicate: float = opt(
        0.8,
        help="Jaccard similarity of two sessions' questions above which the later one is dropped (1 disables)",
        above=0,
        max=1,
    )
    num_perm: int = opt(64, "MinHash permutations for near-duplicate detection", min=1)
    seed: int = opt(1, "MinHash seed", min=0, max=2**32 - 1)

    STAGE: ClassVar[str] = "filter"
    RESUMES: ClassVar[str] = ONE_PASS

    def __post_init__(self):
        check_ranges(self)

    def check_inputs(self) -> None:
        if not Path(self.input).is_file():
            raise ParrotError(f"{self.input}: file not found")
        if self.sensitive:
            load_terms(self.sensitive_terms)


# ---------------------------------------------------------------- question checks


def load_terms(path: str | None) -> re.Pattern | None:
    """One alternation over the list's terms, on word boundaries; None when the list is empty."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise ParrotError(f"{p}: sensitive-terms file not found")
        text = p.read_text(encoding="utf-8")
    else:
        text = DEFAULT_TERMS.read_text(encoding="utf-8")
    terms = [t.strip() for t in text.splitlines() if t.strip() and not t.lstrip().startswith("#")]
    if not terms:
        return None
    alternation = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.I)


class QuestionRules:
    def __init__(self, cfg: FilterConfig):
        self.cfg = cfg
        self.sensitive = load_terms(cfg.sensitive_terms) if cfg.sensitive else None

    def bad_reason(self, question: str, earlier: list[list[str]], last_answer: str | None) -> str | None:
        """Why a question is bad, or None. ``earlier``: the session's earlier questions as words."""
        cfg = self.cfg
        ws = words(question)
        if len(ws) < cfg.min_question_words or len(question.strip()) < cfg.min_question_chars:
            return "too_short"
        if any(overlap(ws, e, cfg.ngram) >= cfg.max_overlap for e in earlier):
            return "repetitive"
        if cfg.role_confusion and self.role_confused(question, ws, last_answer):
            return "role_confused"
        if self.sensitive is not None and self.sensitive.search(question):
            return "sensitive"
        return None

    def role_confused(self, question: str, ws: list[str], last_answer: str | None) -> bool:
        if reads_like_answer(question):
            return True
        return (
            last_answer is not None
            and len(ws) >= 20
            and overlap(ws, words(last_answer), self.cfg.ngram) >= self.cfg.max_overlap
        )


def first_bad_question(messages: list[dict], rules: QuestionRules) -> tuple[int, str] | None:
    """``(message index, reason)`` of the first bad user turn, or None."""
    earlier: list[list[str]] = []
    last_answer = None
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            last_answer = m["content"]
        elif m["role"] == "user":
            reason = rules.bad_reason(m["content"], earlier, last_answer)
            if reason:
                return i, reason
            earlier.append(words(m["content"]))
    return None


# ---------------------------------------------------------------- near duplicates


class NearDuplicates:
    """MinHash LSH over word 3-gram shingles of a session's questions; the first one seen stays."""

    def __init__(self, threshold: float, num_perm: int, seed: int):
        from datasketch import MinHash, MinHashLSH

        self._minhash = lambda: MinHash(num_perm=num_perm, seed=seed)
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.n = 0

    def seen(self, messages: list[dict]) -> bool:
        """True if a near-duplicate was seen before; otherwise remember this session."""
        ws = words(" ".join(m["content"] for m in messages if m["role"] == "user"))
        mh = self._minhash()
        for g in ngrams(ws, 3):
            mh.update(" ".join(g).encode("utf-8"))
        if self.lsh.query(mh):
            return True
        self.lsh.insert(f"s{self.n}", mh)
        self.n += 1
        return False


# ---------------------------------------------------------------- the command


@writes_output
def filter_sessions(cfg: FilterConfig) -> dict:
    """Filter ``cfg.input`` into ``cfg.output``; return the counts (also in the manifest)."""
    t0 = time.monotonic()
    rules = QuestionRules(cfg)
    dedup = NearDuplicates(cfg.near_duplicate, cfg.num_perm, cfg.seed) if cfg.near_duplicate < 1 else None
    counts: Counter = Counter()
    dropped: Counter = Counter()
    cut: Counter = Counter()
    with AtomicWriter(cfg.output) as writer:
        for rec in progress(read_dialogues(cfg.input, counts=counts), desc="filter", unit="session"):
            counts["read"] += 1
            msgs = rec["messages"]
            turns_in = answered_turns(msgs)
            counts["turns_read"] += turns_in
            bad = first_bad_question(msgs, rules)
            if bad is not None:
                at, reason = bad
                if cfg.on_bad_question == "drop":
                    dropped[reason] += 1
                    continue
                msgs = msgs[:at]
                cut[reason] += 1
                counts["turns_cut"] += turns_in - answered_turns(msgs)
                rec["meta"] = {
                    **rec["meta"],
                    "filter": {
                        "cut_reason": reason,
                        "cut_at_turn": asked_turns(msgs) + 1,
                        "turns_before": turns_in,
                    },
                }
            turns = answered_turns(msgs)
            if turns < cfg.min_turns:
                dropped["too_few_turns"] += 1
                continue
            if dedup is not None and dedup.seen(msgs):
                dropped["near_duplicate"] += 1
                continue
            if "turns" in rec["meta"]:
                rec["meta"]["turns"] = turns
            writer.write({**rec, "messages": msgs})
            counts["written"] += 1
            counts["turns_written"] += turns
    counts.update({f"dropped:{k}": v for k, v in dropped.items()})
    counts.update({f"cut:{k}": v for k, v in cut.items()})
    counts["dropped"] = sum(dropped.values())
    counts["cut"] = sum(cut.values())
    write_manifest(
        cfg,
        counts=dict(counts),
        timings={"seconds": round(time.monotonic() - t0, 3)},
        complete=counts["written"] > 0,
        sensitive_terms=cfg.sensitive_terms or "built-in data/sensitive_terms.txt",
    )
    print_summary(cfg, counts, dropped, cut)
    if not counts["written"]:
        raise nothing_kept(cfg, counts["read"], dropped)
    return dict(counts)


def nothing_kept(cfg: FilterConfig, read: int, dropped: Counter) -> ParrotError:
    """Why no session is left, and the settings that would change it."""
    if not read:
        return ParrotError(f"{cfg.input}: holds no sessions to filter (the synthesize stage wrote none)")
    hints = {
        "too_few_turns": f"lower min_turns={cfg.min_turns}",
        "near_duplicate": f"raise near_duplicate={cfg.near_duplicate} (1 turns it off)",
    }
    why = ", ".join(f"{k} {v}" for k, v in dropped.most_common())
    fixes = [hints.get(k, f"on_bad_question=cut instead of drop ({k})") for k in dropped]
    return ParrotError(
        f"filter kept 0 of {read} sessions of {cfg.input} ({why}): {'; '.join(dict.fromkeys(fixes))}, "
        "or synthesize more or longer sessions (synthesize: num_sessions, max_turns)"
    )


def print_summary(cfg: FilterConfig, counts: Counter, dropped: Counter, cut: Counter) -> None:
    rows = [("sessions read", counts["read"]), ("sessions written", counts["written"])]
    rows += [(f"dropped: {k}", v) for k, v in sorted(dropped.items())]
    rows += [(f"cut: {k}", v) for k, v in sorted(cut.items())]
    n = counts["written"]
    rows += [
        ("turns removed by cuts", counts["turns_cut"]),
        ("turns per session (in)", f"{counts['turns_read'] / counts['read']:.2f}" if counts["read"] else "-"),
        ("turns per session (out)", f"{counts['turns_written'] / n:.2f}" if n else "-"),
    ]
    print(f"parrot filter: {cfg.input} -> {cfg.output}")
    print(format_table(rows, ("", "count")))


# ---------------------------------------------------------------- read back


@dataclass(frozen=True)
class FilterRun:
    """What a filter run's manifest says: its settings and what it did."""

    config: FilterConfig  # as recorded (a setting it does not record: its default)
    read: int
    written: int
    cut: dict[str, int]  # sessions cut before their first bad question, by reason
    dropped: dict[str, int]  # sessions dropped, by reason
    turns_read: int
    turns_cut: int
    turns_written: int


def filter_run(path: str | Path) -> FilterRun | None:
    """What the filter run that wrote ``path`` recorded in its manifest (None: no manifest)."""
    manifest = read_manifest(path)
    if manifest is None:
        return None
    recorded, counts = manifest.get("config") or {}, manifest.get("counts") or {}
    known = {f.name for f in fields(FilterConfig)}
    config = FilterConfig(**{"input": "-", "output": "-", **{k: v for k, v in recorded.items() if k in known}})
    cut, dropped = (
        {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith(f"{kind}:")} for kind in ("cut", "dropped")
    )
    turns = {k: counts.get(k, 0) for k in ("turns_read", "turns_cut", "turns_written")}
    return FilterRun(config, counts.get("read", 0), counts.get("written", 0), cut, dropped, **turns)
