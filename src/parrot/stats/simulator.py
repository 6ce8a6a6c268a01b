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
    degenerate question (:data:`DEGENERATE_END_REASONS`: ``empty_question``, ``repeated_question``,
    ``echoed_answer``, ``assistant_like``, ``too_short``, ``too_long``; the session ended at it, see
    :func:`parrot.synthesize.session.degenerate_reason`) or a failed call.
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
    question is degenerate when it ended its session with one of :data:`DEGENERATE_END_REASONS`
    (the synthesize end reasons), or when the filter
    stage's question rules (:class:`parrot.filter.stage.QuestionRules`, with the filter's
    own settings from its manifest when ``filtered`` is given) call it ``too_short``,
    ``repetitive`` or ``role_confused`` (answer-like). The rules are applied to *every* simulator
    question, so the share is per question; the filter itself only acts on the first bad question
    of a session, and what it did is reported as recorded under ``filter`` (``cut`` and
    ``dropped`` by reason, sessions and turns kept). ``sensitive`` is about content, not the
    role, and is not counted.

    Redraws: synthesize may reject a degenerate question and draw it again; a record's
    ``meta.redraws`` holds ``{reason: n}`` of those (none without it: an older file). ``redraws``:
    their totals over the written sessions (``redraws_run``: the manifest's ``redraw:REASON``
    counts, every session the run drew, written or not, when it has them). ``drawn``: every
    question the simulator drew = ``questions`` + redraws. ``degenerate_after``: the share of
    degenerate questions left after the redraws (= ``share``, with its interval);
    ``degenerate_before``: (redraws + degenerate) / drawn, the share before redraws fixed any.
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
``intervals``
    95% bootstrap intervals (percentile, ``n_boot`` resamples, seeded by ``seed``), each a cell
    ``{"value", "low", "high", "n", "n_boot", "level"}``: ``self_ended`` and ``turns_mean`` (mean
    turns per session) resample the written sessions; ``ks`` and ``tv`` resample the simulator's
    sessions and the real ones independently (``sizes``: both; a distance computed on resamples is
    biased upward, so with few sessions the interval can sit above the point value);
    ``distinct_2`` resamples the first questions (None unless topic-seeded). The degenerate
    shares' intervals are in ``role_adherence`` (``degenerate_before``/``degenerate_after``) and
    resample sessions too (questions of one session go together; an unwritten session is one
    question).

Nothing here raises on small or empty data: missing manifests, an empty file or no real sessions
give ``None`` for what cannot be computed.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from parrot.core.dialogue import asked_turns, read_dialogues
from parrot.report.bootstrap import bootstrap_cell, share_cell
from parrot.stats.sampling import Reservoir

log = logging.getLogger("parrot.stats")

#: Below this many sessions a measure is reported with ``too_few: True``.
MIN_SESSIONS = 20

#: Synthesize end reasons that mean the simulator wrote a question that was not one.
DEGENERATE_END_REASONS = (
    "empty_question",
    "repeated_question",
    "echoed_answer",
    "assistant_like",
    "too_short",
    "too_long",
)
#: Filter reasons that are about the simulator's role (``sensitive`` is about content).
ROLE_RULES = ("too_short", "repetitive", "role_confused")

NOTE = (
    "self_ended: share of sessions ended by the simulator's stop marker. turns_distance: ks = "
    "two-sample Kolmogorov-Smirnov statistic (largest gap between the empirical CDFs of turns per "
    "session), tv = total-variation distance between the two turns-per-session distributions; "
    "real lengths capped at the run's max_turns first. role_adherence.share: degenerate simulator "
    "questions (ended the session as a degenerate question: empty/repeat/echo/assistant-like/too short/too long, or fail the filter's too_short/"
    "repetitive/role_confused rules) over all questions the simulator wrote. first_questions: "
    "distinct-2 = distinct word bigrams / all bigrams; cosine_distance = mean pairwise cosine "
    "distance of all-MiniLM-L6-v2 embeddings. Degenerate before/after redraws: rejected and redrawn "
    "questions plus the degenerate ones kept, over all questions drawn; after: the degenerate ones kept, "
    "over the questions kept. [low, high]: 95% bootstrap intervals over sessions (KS/TV: simulator and "
    "real sessions resampled independently; distinct-2: over first questions)."
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
    n_boot: int = 1000,
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
    redraws: Counter = Counter()
    units: list[Session] = []  # one per session, for the intervals
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
        reasons = _simulator_question_reasons(msgs, rules, skip_first=not topic)
        if info.end_reason in DEGENERATE_END_REASONS:  # the question that ended it is not in the file
            reasons.append(info.end_reason)
        by_reason.update(reasons)
        redrawn = session_redraws(rec)
        redraws.update(redrawn)
        asked = len(questions) - (not topic and bool(questions)) + (info.end_reason in DEGENERATE_END_REASONS)
        units.append(Session(info.end_reason, asked_turns(msgs), asked, len(reasons), sum(redrawn.values())))

    for reason, v in run.unwritten.items():
        if reason in DEGENERATE_END_REASONS:  # a session whose first question was degenerate
            by_reason[reason] += v
            units += [Session(reason, 0, 1, 1, 0, written=False)] * v

    max_turns = run.max_turns
    real_counts = real_turn_counts(real) if real_counts is None else real_counts
    capped = Counter()
    for t, v in real_counts.items():
        capped[min(t, max_turns) if max_turns else t] += v
    degenerate = sum(by_reason.values())
    asked = sum(u.asked for u in units)
    boot = {"n_boot": n_boot, "seed": seed}
    written = [u for u in units if u.written]
    real_lengths = list(capped.elements())
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
            "drawn": asked + sum(redraws.values()),
            "degenerate_before": share_cell([(u.degenerate + u.redraws, u.asked + u.redraws) for u in units], **boot),
            "degenerate_after": share_cell([(u.degenerate, u.asked) for u in units], **boot),
            "redraws": dict(redraws.most_common()),
            **({"redraws_run": run_redraws} if (run_redraws := manifest_redraws(sessions)) else {}),
        },
        "first_questions": _first_questions(firsts.seen, firsts.items, embed_model),
        "intervals": {
            "self_ended": share_cell([(u.end_reason == "stop_marker", 1) for u in written], **boot),
            "turns_mean": share_cell([(u.turns, 1) for u in written], **boot),
            "ks": bootstrap_cell(_distance(ks_statistic), [u.turns for u in written], real_lengths, **boot),
            "tv": bootstrap_cell(_distance(total_variation), [u.turns for u in written], real_lengths, **boot),
            "distinct_2": bootstrap_cell(_distinct_of_grams, [bigrams(t) for t in firsts.items], **boot)
            if firsts.seen
            else None,
        },
        "note": NOTE,
    }
    if run.unwritten:
        out["unwritten"] = run.unwritten
    if done is not None:
        out["role_adherence"]["filter"] = {"path": str(filtered), "on_bad_question": done.config.on_bad_question}
        out["role_adherence"]["filter"].update({k: v for k, v in asdict(done).items() if k != "config"})
    return out


# ---------------------------------------------------------------- pieces


@dataclass(frozen=True)
class Session:
    """One session's part in the measures: the unit the intervals resample."""

    end_reason: str
    turns: int
    asked: int  # questions the simulator wrote that were kept (the one that ended it included)
    degenerate: int  # of those, degenerate ones
    redraws: int  # questions drawn, rejected and drawn again (``meta.redraws``)
    written: bool = True  # False: a session with no complete turn, counted from the manifest


def session_redraws(record: dict) -> Counter:
    """``{reason: n}``: the questions a session's simulator drew that synthesize rejected and drew
    again (``meta.redraws``; none in a record without it).

    >>> session_redraws({"meta": {"redraws": {"too_short": 2, "echoed_answer": 1}}})
    Counter({'too_short': 2, 'echoed_answer': 1})
    >>> session_redraws({"meta": {}})
    Counter()
    """
    got = (record.get("meta") or {}).get("redraws")
    return Counter({str(k): int(v) for k, v in got.items() if v}) if isinstance(got, dict) else Counter()


def manifest_redraws(path: str) -> dict:
    """``{reason: n}`` from the synthesize manifest's ``redraw:REASON`` counts (every session the run
    drew, written or not); empty without them."""
    from parrot.core.manifest import read_manifest

    counts = (read_manifest(path) or {}).get("counts") or {}
    return {k.removeprefix("redraw:"): v for k, v in sorted(counts.items()) if k.startswith("redraw:") and v}


def _distance(f):
    """A distance of two samples of lengths (lists), by ``f`` of their counters."""
    return lambda a, b: f(Counter(a), Counter(b))


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
    return _distinct_of_grams([bigrams(t, n) for t in texts])


def bigrams(text: str, n: int = 2) -> list[tuple]:
    """The word n-grams of ``text`` (bigrams by default).

    >>> bigrams("How do I sort?")
    [('how', 'do'), ('do', 'i'), ('i', 'sort')]
    """
    from parrot.filter.stage import words

    ws = words(text)
    return [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]


def _distinct_of_grams(per_text: list[list[tuple]]) -> float | None:
    grams = [g for gs in per_text for g in gs]
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
