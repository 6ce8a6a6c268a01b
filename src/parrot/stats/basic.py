"""One streaming pass over a dataset: per-session scalars, bounded histograms and samples.

:class:`DatasetAccumulator` sees each Dialogue once and keeps only counters, log histograms
and fixed-size reservoirs, so memory does not grow with the input (the quadratic metrics run
later on the reservoirs). Token lengths are counted in batches through a Hugging Face fast
tokenizer; words are whitespace-separated runs.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter

from parrot.core.dialogue import asked_turns, split_system
from parrot.core.tokens import TokenCounter
from parrot.stats.context import context_reasons
from parrot.stats.moments import SessionMoments
from parrot.stats.sampling import LogHistogram, Reservoir

MAX_TURN_INDEX = 20  # context dependence by turn index: turns 20 and later share a bucket


def count_words(text: str) -> int:
    return len(text.split())


class DatasetAccumulator:
    """Everything ``stats`` learns about one dataset in one pass.

    ``question_sample`` feeds Self-ROUGE, topic diversity and human-likeness;
    ``session_sample`` (lists of user questions) feeds topic shifts; ``followup_sample``
    (history, question) pairs feed the optional LLM context judge.
    """

    def __init__(
        self,
        *,
        sample: int,
        shift_sessions: int,
        judge_sample: int,
        seed: int,
        tokens: TokenCounter | None,
        max_chars: int = 2000,
    ):
        self.sessions = 0
        self.turns = Counter()  # turns per session -> sessions
        self.context_per_session = Counter()  # dependent follow-ups per session -> sessions
        self.by_turn = [[0, 0] for _ in range(MAX_TURN_INDEX)]  # [dependent, total] per turn index
        self.reasons = Counter()  # reason kind -> count
        self.user_words, self.assistant_words = LogHistogram(), LogHistogram()
        self.user_tokens, self.assistant_tokens = LogHistogram(), LogHistogram()
        self.with_system = 0
        self.detector_seconds = 0.0
        self.detector_cpu_seconds = 0.0
        self.tokens = tokens
        self.max_chars = max_chars  # samples keep the head of long texts only
        self.question_sample = Reservoir(sample, seed)
        self.session_sample = Reservoir(shift_sessions, seed + 1)
        self.followup_sample = Reservoir(judge_sample, seed + 2)
        self.moments = SessionMoments()  # per-session sums: the compared metrics' standard errors

    def add(self, dialogue: dict) -> None:
        system, messages = split_system(dialogue["messages"])
        self.with_system += system is not None
        questions: list[str] = []
        dependent = user_words = assistant_words = answers = 0
        for k, m in enumerate(messages):
            text = m["content"]
            if m["role"] == "user":
                turn = len(questions)
                questions.append(text[: self.max_chars])
                words = count_words(text)
                user_words += words
                self.user_words.add(words)
                if self.tokens:
                    self.tokens.add(text, self.user_tokens.add)
                t0, c0 = time.perf_counter(), time.process_time()
                reasons = context_reasons(text)
                self.detector_seconds += time.perf_counter() - t0
                self.detector_cpu_seconds += time.process_time() - c0
                slot = self.by_turn[min(turn, MAX_TURN_INDEX - 1)]
                slot[1] += 1
                if reasons:
                    slot[0] += 1
                    for r in reasons:
                        self.reasons[r.split(":", 1)[0]] += 1
                if turn > 0:
                    dependent += bool(reasons)
                    self.followup_sample.add(
                        {
                            "history": [
                                dict(x, content=x["content"][: self.max_chars]) for x in messages[max(0, k - 4) : k]
                            ],
                            "question": text[: self.max_chars],
                            "detector": bool(reasons),
                        }
                    )
                self.question_sample.add(text[: self.max_chars])
            elif m["role"] == "assistant":
                words = count_words(text)
                assistant_words += words
                answers += 1
                self.assistant_words.add(words)
                if self.tokens:
                    self.tokens.add(text, self.assistant_tokens.add)
        self.sessions += 1
        turns = asked_turns(messages)
        self.turns[turns] += 1
        self.moments.add(
            turns=turns,
            dependent=dependent,
            followups=max(turns - 1, 0),
            user_messages=len(questions),
            user_words=user_words,
            assistant_messages=answers,
            assistant_words=assistant_words,
        )
        self.context_per_session[dependent] += 1
        self.session_sample.add(questions)

    def finish(self) -> None:
        if self.tokens:
            self.tokens.flush()

    # ------------------------------------------------------------ summaries

    def summary(self) -> dict:
        n = self.sessions
        followups = sum((t - 1) * c for t, c in self.turns.items() if t > 0)
        dep_total = sum(k * c for k, c in self.context_per_session.items())
        out = {
            "sessions": n,
            "sessions_with_system": self.with_system,
            "turns_mean": _counter_mean(self.turns),
            "turns_median": _counter_median(self.turns),
            "turns_histogram": {str(k): v for k, v in sorted(self.turns.items())},
            "user_words": _hist_summary(self.user_words),
            "assistant_words": _hist_summary(self.assistant_words),
            "context_dependent_per_session": dep_total / n if n else None,
            "context_dependent_share_of_followups": dep_total / followups if followups else None,
            "context_reasons": dict(self.reasons.most_common()),
            "context_by_turn": [
                {"turn": i + 1, "dependent": d, "questions": t, "share": d / t if t else None}
                for i, (d, t) in enumerate(self.by_turn)
                if t
            ],
            "session_moments": self.moments.to_dict(),
        }
        if self.tokens:
            out["user_tokens"] = _hist_summary(self.user_tokens)
            out["assistant_tokens"] = _hist_summary(self.assistant_tokens)
        return out


def _counter_mean(c: Counter) -> float | None:
    n = sum(c.values())
    return sum(k * v for k, v in c.items()) / n if n else None


def _counter_median(c: Counter) -> float | None:
    """Exact median of the multiset a Counter describes (without expanding it)."""
    n = sum(c.values())
    if not n:
        return None
    keys = sorted(c)

    def nth(i: int) -> int:
        run = 0
        for k in keys:
            run += c[k]
            if run > i:
                return k
        return keys[-1]

    return statistics.fmean([nth((n - 1) // 2), nth(n // 2)])


def _hist_summary(h: LogHistogram) -> dict:
    return {
        "count": h.count,
        "mean": h.mean,
        "median": h.quantile(0.5),
        "p90": h.quantile(0.9),
        "max": h.max,
        "histogram": h.to_dict(),
    }
