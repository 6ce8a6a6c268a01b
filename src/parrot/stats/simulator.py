"""Simulator measures: how a user simulator (an *asker arm* of the experiment) behaves, measured
from what its synthesize run wrote, beside real user sessions.

:func:`simulator_measures` reads one synthesize output (Dialogue JSONL, its manifest
``<file>.manifest.json`` beside it), a file of real sessions and, optionally, the filter stage's
output for the same arm. Its numbers, defined:

``sessions``
    sessions in the synthesize output (written ones: each has at least one complete turn).
``self_ended``
    share of those sessions the simulator ended itself, with its stop marker
    (``meta.end_reason == "stop_marker"``); the other reasons are the turn cap (``max_turns``), a
    degenerate question (``empty_question``, ``repeated_question``, ``echoed_answer``: the session
    ended at it, see :func:`parrot.synthesize.session.degenerate_reason`) or a failed call.
``end_reasons``
    ``{reason: sessions}`` over the written sessions; ``unwritten`` the manifest's
    ``sessions_failed:REASON`` counts (sessions with no complete turn, not in the file).
``turns`` / ``real_turns``
    turns per session (user questions, :func:`parrot.core.dialogue.asked_turns`, as the stats
    table counts them): ``{"n", "mean", "median", "hist": {turns: sessions}}``.
``turns_distance``
    how far the simulator's session lengths are from the real ones: ``ks``, the two-sample
    Kolmogorov-Smirnov statistic (the largest gap between the two empirical CDFs, 0..1) and
    ``tv``, the total-variation distance between the two length distributions (half the L1
    distance of the normalised histograms, 0..1). A synthesized session cannot run past the run's
    ``max_turns``, so real lengths are capped at it (``real_capped_at``) before comparing: a
    real 30-turn session counts as one that reached the cap.
``role_adherence``
    ``questions``: the questions the simulator wrote (a seed question copied from real data is
    not one; a degenerate question that ended a session is), ``degenerate``: those that were not
    a user's question, ``share`` = degenerate / questions, ``by_reason``: ``{reason: n}``. A
    question is degenerate when it ended its session as ``empty_question`` /
    ``repeated_question`` / ``echoed_answer`` (the synthesize end reasons), or when the filter
    stage's question rules (:class:`parrot.filter.stage.QuestionRules`, with the filter's
    own settings from its manifest when ``filtered`` is given) call it ``too_short``,
    ``repetitive`` or ``role_confused`` (answer-like). The rules are applied to *every* simulator
    question, so the share is per question; the filter itself only acts on the first bad question
    of a session, and what it did is reported as recorded under ``filter`` (``cut`` and
    ``dropped`` by reason, sessions and turns kept). ``sensitive`` is about content, not the
    role, and is not counted.
``first_questions``
    ``topic_seeded``: whether sessions started from topics (the simulator wrote question 1;
    from seed questions, question 1 is a real user's and says nothing of the simulator). For
    topic-seeded sessions: ``n`` first questions (a seeded sample of at most ``sample``),
    ``distinct_2`` (distinct word bigrams / all word bigrams over those questions, 0..1,
    higher is more varied) and ``cosine_distance`` (mean pairwise cosine distance of their
    all-MiniLM-L6-v2 embeddings, :mod:`parrot.stats.embed`; ``None`` with ``embed_note`` when
    the model is unavailable). Otherwise ``distinct_2``/``cosine_distance`` are ``None`` and
    ``reason`` says why.
``too_few``
    fewer than :data:`MIN_SESSIONS` sessions: the numbers are still given, but are anecdotes.

Nothing here raises on small or empty data: missing manifests, an empty file or no real sessions
give ``None`` for what cannot be computed.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from parrot.core.dialogue import asked_turns, read_dialogues
from parrot.stats.sampling import Reservoir

log = logging.getLogger("parrot.stats")

#: Below this many sessions a measure is reported with ``too_few: True``.
MIN_SESSIONS = 20

#: Synthesize end reasons that mean the simulator wrote a question that was not one.
DEGENERATE_END_REASONS = ("empty_question", "repeated_question", "echoed_answer")
#: Filter reasons that are about the simulator's role (``sensitive`` is about content).
ROLE_RULES = ("too_short", "repetitive", "role_confused")

NOTE = (
    "self_ended: share of sessions ended by the simulator's stop marker. turns_distance: ks = "
    "two-sample Kolmogorov-Smirnov statistic (largest gap between the empirical CDFs of turns per "
    "session), tv = total-variation distance between the two turns-per-session distributions; "
    "real lengths capped at the run's max_turns first. role_adherence.share: degenerate simulator "
    "questions (ended the session as empty/repeat/echo, or fail the filter's too_short/"
    "repetitive/role_confused rules) over all questions the simulator wrote. first_questions: "
    "distinct-2 = distinct word bigrams / all bigrams; cosine_distance = mean pairwise cosine "
    "distance of all-MiniLM-L6-v2 embeddings."
)


def simulator_measures(
    sessions: str,
    real: str,
    *,
    filtered: str | None = None,
    seed: int = 0,
    sample: int = 300,
    embed_model: str | None = None,
    real_counts: Counter | None = None,
) -> dict:
    """The simulator measures of one synthesize output (definitions: the module docstring).

    ``real_counts``: :func:`real_turn_counts` of ``real``, when the caller measures several arms
    against the same real sessions (read once).

    ``embed_model``: a sentence-transformers folder for the first-question embeddings (default:
    the packaged all-MiniLM-L6-v2; ``"none"`` skips the embeddings).
    """
    from parrot.filter.stage import FilterConfig, QuestionRules, filter_run
    from parrot.synthesize.info import run_info, session_info

    run = run_info(sessions)
    done = filter_run(filtered) if filtered else None
    rules = QuestionRules(replace(done.config if done else FilterConfig(input="-", output="-"), sensitive=False))

    n = 0
    ends: Counter = Counter()
    turns: Counter = Counter()
    by_reason: Counter = Counter()
    asked = 0
    firsts = Reservoir(sample, seed)  # the first questions of topic-seeded sessions
    asker = None
    for rec in _dialogues(sessions):
        n += 1
        info = session_info(rec)
        ends[info.end_reason] += 1
        msgs = rec["messages"]
        turns[asked_turns(msgs)] += 1
        asker = asker or info.asker
        topic = (info.seed_kind or ("topic" if run.topic_seeded else "question")) == "topic"
        questions = [m for m in msgs if m["role"] == "user"]
        if topic and questions:
            firsts.add(questions[0]["content"])
        asked += len(questions) - (not topic and bool(questions))
        for r in _simulator_question_reasons(msgs, rules, skip_first=not topic):
            by_reason[r] += 1
        if info.end_reason in DEGENERATE_END_REASONS:  # the question that ended it is not in the file
            asked += 1
            by_reason[info.end_reason] += 1

    for reason, v in run.unwritten.items():
        if reason in DEGENERATE_END_REASONS:
            asked += v
            by_reason[reason] += v

    max_turns = run.max_turns
    real_counts = real_turn_counts(real) if real_counts is None else real_counts
    capped = Counter()
    for t, v in real_counts.items():
        capped[min(t, max_turns) if max_turns else t] += v
    degenerate = sum(by_reason.values())
    out = {
        "path": str(sessions),
        "sessions": n,
        "too_few": n < MIN_SESSIONS,
        "min_sessions": MIN_SESSIONS,
        "asker": {
            "spec": run.asker_spec or (asker or {}).get("spec"),
            "mode": run.asker_mode or (asker or {}).get("mode"),
        },
        "max_turns": max_turns,
        "self_ended": ends["stop_marker"] / n if n else None,
        "end_reasons": dict(ends.most_common()),
        "turns": _length_summary(turns),
        "real_turns": _length_summary(real_counts),
        "turns_distance": {
            "ks": ks_statistic(turns, capped),
            "tv": total_variation(turns, capped),
            "real_capped_at": max_turns,
        },
        "role_adherence": {
            "questions": asked,
            "degenerate": degenerate,
            "share": degenerate / asked if asked else None,
            "by_reason": dict(by_reason.most_common()),
        },
        "first_questions": _first_questions(firsts.seen, firsts.items, embed_model),
        "note": NOTE,
    }
    if run.unwritten:
        out["unwritten"] = run.unwritten
    if done is not None:
        out["role_adherence"]["filter"] = {"path": str(filtered), "on_bad_question": done.config.on_bad_question}
        out["role_adherence"]["filter"].update({k: v for k, v in asdict(done).items() if k != "config"})
    return out


# ---------------------------------------------------------------- pieces


def real_turn_counts(real: str | None) -> Counter:
    """Sessions by number of turns in the real sessions file (nothing for a missing one)."""
    return Counter(asked_turns(r["messages"]) for r in _dialogues(real))


def _dialogues(path: str | None):
    """Valid Dialogue records of ``path``; nothing for a missing file (never raises)."""
    if not path or not Path(path).is_file():
        if path:
            log.warning("simulator measures: %s: no such file", path)
        return
    yield from read_dialogues(path, on_error="skip")


def _simulator_question_reasons(messages: list[dict], rules, *, skip_first: bool) -> list[str]:
    """The filter's role rules over every question the simulator wrote (a seed question is
    context for the rules, never judged itself)."""
    from parrot.filter.stage import words

    reasons = []
    earlier: list[list[str]] = []
    last_answer = None
    first = True
    for m in messages:
        if m["role"] == "assistant":
            last_answer = m["content"]
        elif m["role"] == "user":
            if not (first and skip_first):
                r = rules.bad_reason(m["content"], earlier, last_answer)
                if r in ROLE_RULES:
                    reasons.append(r)
            first = False
            earlier.append(words(m["content"]))
    return reasons


def _length_summary(c: Counter) -> dict:
    n = sum(c.values())
    if not n:
        return {"n": 0, "mean": None, "median": None, "hist": {}}
    values = sorted(c.elements())
    return {
        "n": n,
        "mean": sum(k * v for k, v in c.items()) / n,
        "median": float(statistics.median(values)),
        "hist": {int(k): v for k, v in sorted(c.items())},
    }


def ks_statistic(a: Counter, b: Counter) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic of two integer samples given as counters.

    >>> ks_statistic(Counter({1: 2, 2: 2}), Counter({2: 2, 3: 2}))
    0.5
    >>> ks_statistic(Counter({1: 3}), Counter({1: 5}))
    0.0
    """
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return None
    fa = fb = 0.0
    d = 0.0
    for k in sorted(set(a) | set(b)):
        fa += a.get(k, 0) / na
        fb += b.get(k, 0) / nb
        d = max(d, abs(fa - fb))
    return round(d, 12)


def total_variation(a: Counter, b: Counter) -> float | None:
    """Half the L1 distance between two normalised histograms (0: same, 1: disjoint).

    >>> total_variation(Counter({1: 2, 2: 2}), Counter({2: 2, 3: 2}))
    0.5
    """
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return None
    return round(sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b)) / 2, 12)


def distinct_n(texts: list[str], n: int = 2) -> float | None:
    """Distinct word n-grams over all word n-grams of ``texts`` (None when there is none).

    >>> distinct_n(["a b c", "a b d"])   # bigrams: ab bc ab bd -> 3 distinct of 4
    0.75
    """
    from parrot.filter.stage import words

    grams = [tuple(ws[i : i + n]) for t in texts for ws in [words(t)] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def _first_questions(seen: int, firsts: list[str], embed_model: str | None) -> dict:
    if not seen:
        return {
            "topic_seeded": False,
            "n": 0,
            "distinct_2": None,
            "cosine_distance": None,
            "reason": "sessions start from real seed questions: question 1 is a real user's, not the simulator's",
        }
    out = {"topic_seeded": True, "n": len(firsts), "sessions": seen, "distinct_2": distinct_n(firsts, 2)}
    out["cosine_distance"], note = _cosine_distance(firsts, embed_model)
    if note:
        out["embed_note"] = note
    return out


def _cosine_distance(texts: list[str], embed_model: str | None) -> tuple[float | None, str | None]:
    if len(texts) < 2:
        return None, "fewer than 2 first questions"
    if embed_model is not None and embed_model.lower() == "none":
        return None, "embeddings turned off"
    try:
        from parrot.stats.embed import Embedder, mean_pairwise_cosine_distance

        emb = Embedder(embed_model, max_length=128).encode(texts)
    except Exception as e:  # a missing package or model: the other numbers still stand
        log.warning("simulator measures: no embeddings (%s)", e)
        return None, f"embedding model unavailable: {e}"
    return mean_pairwise_cosine_distance(emb), None
