"""What a synthesis run keeps: each ended session in the output (or, with no complete turn, in
the failures file), each added message in the journal, the counts its manifest records, and its
progress bar."""

from __future__ import annotations

import time
from collections import Counter

from tqdm.auto import tqdm

from parrot.backends import Completion
from parrot.core.jsonl import AppendWriter
from parrot.synthesize.session import ADDED, FAILED, REDRAW, Session


class SessionWriter:
    """The run's output, journal and failures file (open appenders), and its progress ``bar``."""

    def __init__(self, output: AppendWriter, journal: AppendWriter, failures: AppendWriter, bar: tqdm):
        self.output, self.journal, self.failures, self.bar = output, journal, failures, bar
        self.counts: Counter = Counter()  # calls failed and shortened, sessions written and failed
        self.turns = 0  # answers added in this run
        self.tokens = 0  # completion tokens of this run's calls
        self.started = time.monotonic()

    def add_call(self, s: Session, role: str, c: Completion, outcome: str) -> None:
        """Count a call of session ``s`` and journal the message it added (``outcome``: what
        :meth:`SessionRules.apply <parrot.synthesize.session.SessionRules.apply>` said)."""
        self.tokens += c.completion_tokens or 0
        if c.shortened:
            self.counts[f"calls_shortened:{role}"] += 1
        if outcome == FAILED:
            self.counts[f"call_failed:{role}"] += 1
        elif outcome == ADDED:
            self.journal.write({"i": s.index, "n": len(s.messages) - 1, "m": s.messages[-1]})
            self.turns += role == "assistant"
        elif outcome == REDRAW:  # the session's tally so far, and the draws made at this place
            self.journal.write({"i": s.index, "n": len(s.messages), "again": s.drawn_again, "redraws": s.redraws})
        self.show_rates()

    def add_session(self, s: Session, record: dict | None) -> None:
        """An ended session: its ``record`` to the output; with none (no complete turn), the session
        to the failures file, and to the journal a reset (``--resume`` starts it afresh)."""
        if record is None:
            failure = {"id": s.id, "index": s.index, "reason": s.end_reason, "error": s.last_error}
            self.failures.write({**failure, "seed": s.seed, "time": time.time()})
            self.journal.write({"i": s.index, "reset": True})
            self.counts["sessions_failed"] += 1
            self.counts[f"sessions_failed:{s.end_reason}"] += 1
        else:
            self.output.write(record)
            self.counts["sessions_written"] += 1
            self.counts[f"end:{s.end_reason}"] += 1
        self.bar.update(1)
        self.show_rates()

    def show_rates(self) -> None:
        elapsed = max(1e-9, time.monotonic() - self.started)
        self.bar.set_postfix(
            turns_s=f"{self.turns / elapsed:.2f}",
            tok_s=f"{self.tokens / elapsed:.1f}",
            failed=self.counts["sessions_failed"],
            refresh=False,
        )
