"""Does a user question depend on earlier turns? A fast rule-based detector (no model).

A question *depends on context* when a reader who sees only that question cannot tell what it
refers to: a pronoun or demonstrative with no antecedent inside the question ("why is it
slow?"), ellipsis ("and the second one?", "what about Java?"), an edit of an earlier answer
("make it shorter"), an explicit pointer back ("you said...", "the code above") or a very short
follow-up ("why?", "more").

>>> context_reasons("Can you make it shorter?")
['imperative_edit:make it shorter', 'pronoun:it']
>>> context_reasons("Write a poem about the sea and make it rhyme.")
[]
>>> is_context_dependent("and the second one?")
True

The rules read English. A question in another script (Chinese, Russian, ...) is never called
dependent for being short: it is simply not judged.

The rules favour precision on long questions: a question that carries its own material (a
colon or code block after "this", 80+ words of pasted text) is self-contained unless it points
back explicitly. Accuracy on the labelled set in ``tests/data/context_labelled.jsonl`` is
asserted by ``tests/test_stats_context.py`` (see ``docs/stats.md``).

Only ``re`` is imported, so :mod:`parrot.capo` and the stats command can use this cheaply.
"""

from __future__ import annotations

import re

__all__ = ["context_reasons", "is_context_dependent"]

# Words that cannot be an antecedent: function words, request verbs and vague nouns.
_FUNCTION = set(
    """
a an the and or but so if then than because as of in on at to for from with without by about into onto
over under up down out off again further once here there when where why how what which who whom whose
all any both each few more most other some such no nor not only own same too very can could will would
shall should may might must do does did done doing be is are was were been being am have has had having
i me my mine myself you your yours yourself we us our ours they them their theirs he him his she her
it its this that these those just now also please pls plz kindly ok okay yes no yeah yep nope sure well
thanks thank great good nice cool fine right really actually maybe perhaps let lets let's give gave tell
told show explain write rewrite make made put get got go going want wanted need needed like would
help try use using used say said mean meant know think see look keep continue expand elaborate
something anything everything nothing thing things one ones way ways bit lot lots detail details
example examples instance more less much many else another even still yet just ever never always
version answer answers response reply again further please give me can you could you
first second third fourth fifth last next previous above below following same new
year years time times date day days kind type sort part much long
do don't doesn't didn't isn't aren't wasn't can't won't i'm it's that's what's how's
""".split()
)

# Common verbs: content words, but never the thing a pronoun points back to ("install it").
_VERBS = set(
    """
install test add write wrote written release understand work believe run ran use fix compare explain describe
improve create build built call change check choose cook cool cut deploy design draw eat ate edit feed fed find
found finish follow happen handle implement include keep kept learn leave left lose lost love move open pay paid
play prepare read remember remove replace return save send sent set sort start stop suggest support take took
taken teach taught translate turn update visit wear wore win won buy bought sell sold cause apply feel felt
want grow grew live die born become became begin began bring brought develop consider allow offer provide serve
expect pick compile debug execute import export store load print parse measure count calculate solve prove
define summarize summarise rephrase simplify shorten modify refactor optimize clean wash fly flew swim drive
drove ride rode speak spoke talk ask recommend prefer agree disagree argue invent discover produce come came
happen happened mention share attach connect configure setup install download upload hear heard watch
""".split()
)


def _is_verb(word: str) -> bool:
    if word in _VERBS:
        return True
    for suffix in ("ing", "ed", "es", "s", "d"):
        if word.endswith(suffix) and word[: -len(suffix)] in _VERBS:
            return True
    return False


_PERSONAL = {
    "it",
    "its",
    "they",
    "them",
    "their",
    "theirs",
    "he",
    "him",
    "his",
    "she",
    "her",
    "hers",
    "itself",
    "themselves",
    "himself",
    "herself",
}
_DEMONSTRATIVE = {"this", "that", "these", "those"}

# Nouns that, after a demonstrative or an ordinal, name something said earlier in the chat.
_DISCOURSE_NOUNS = (
    "one|ones|part|parts|code|snippet|answer|response|reply|list|example|examples|story|"
    "poem|essay|text|function|script|question|point|points|idea|ideas|article|email|"
    "letter|table|paragraph|paragraphs|sentence|sentences|section|step|steps|program|"
    "version|solution|approach|method|option|options|suggestion|suggestions|explanation|"
    "summary|message|output|query|song|plan|outline|error|bug|problem|issue|case|"
    "recipe|character|characters|book|movie|word|words|line|lines|item|items|name|names|"
    "title|titles|topic|topics|result|results|class|file|translation|description|design|"
    "stuff|thing|things|information|info|data|model|formula|equation|number|numbers"
)

# "it" with no referent at all: "is it possible to", "it takes", "what time is it".
_EXPLETIVE_IT = re.compile(
    r"\bit(?:'s| is| was| would be| will be| be)?\s+(?:\w+\s+)?(?:possible|true|necessary|important|"
    r"better|best|easy|easier|hard|harder|difficult|ok|okay|safe|worth|likely|common|normal|legal|"
    r"bad|wrong|right|good|a good idea|recommended|advisable|fair|feasible|allowed|enough|too late|"
    r"required|cheaper|faster)\b(?:\s+\w+)?\s+(?:to|that|for|if|whether|when)\b"
    r"|\bit\s+(?:takes?|took|seems?|appears?|costs?|rains?|snows?|matters?)\b"
    r"|\bhow long (?:does|did|will|would) it\b|\bwhat time is it\b|\bhow is it going\b"
    r"|\bwhat (?:does|did) it mean to\b|\bmake it (?:possible|easy|easier|hard|harder) (?:to|for)\b"
    r"|\bis it (?:true|possible|safe|ok|okay|legal|normal|worth|bad|wise|necessary)\b"
    r"|\bit depends\b|\bwhen it comes to\b|\bhow (?:is|was) it (?:that|possible)\b",
    re.I,
)

_EXPLICIT = [
    (
        re.compile(
            r"\byou (?:just |previously |earlier |already )?(?:said|mentioned|wrote|suggested|gave|"
            r"provided|listed|described|recommended|generated|created|showed|explained|told|used|meant)\b",
            re.I,
        ),
        "reference",
    ),
    (
        re.compile(
            r"(?<!limit )(?<!keep )(?<!start )(?<!begin )(?<!format )(?<!end )(?<!make )(?<!in )"
            r"(?<!structure )(?<!write )\byour (?:previous |last |first |earlier |latest |original |above |second )?(?:answer|"
            r"response|reply|code|example|list|suggestion|explanation|solution|story|poem|version|"
            r"output|essay|text|script|summary|translation|draft|message|point|points|recommendation)s?\b",
            re.I,
        ),
        "reference",
    ),
    (
        re.compile(
            r"\b(?:the |that )?(?:above|previous|preceding|earlier|prior|last) (?:answer|response|reply|"
            r"code|example|list|message|one|output|question|prompt|text|story|poem|version|query|"
            r"script|function|paragraph|table|essay|summary|solution|point|step|suggestion|section)\b"
            r"|\b(?:as|from|in|of) (?:the )?above\b|\bmentioned (?:above|before|earlier)\b"
            r"|\b(?:as|like) (?:before|earlier)\b|\bthe rest(?: of (?:it|the|them|your))?\b|\bthe remaining\b"
            r"|\b(?:different|other|similar|better|new|more) ones\b|\bthe (?:former|latter)\b|\babove (?:code|answer|list|text|example)\b"
            r"|\bthe (?:\w+ ){1,2}(?:above|you (?:wrote|gave|made|suggested|provided))\b|\babove\s*[?.!]*$",
            re.I,
        ),
        "reference",
    ),
    (
        re.compile(
            r"\b(?:the|that) (?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|"
            r"other|next|previous) (?:one|ones|option|point|item|suggestion|idea|example|paragraph|"
            r"sentence|part|section|answer|version|step)\b(?! (?:of|to)\b)"
            r"|\b(?:point|step|item|option|idea|#) ?\d{1,2}\b(?! ?(?:%|percent|years?|"
            r"days?|minutes?|hours?|times?|people|of\b))",
            re.I,
        ),
        "ordinal",
    ),
]

# Openings that only make sense as a continuation.
_ELLIPSIS = re.compile(
    r"^(?:(?:ok(?:ay)?|great|thanks|good|nice|cool|perfect|yes|no)[,.!]?\s+)?"
    r"(?P<e>and (?:the |for |what |how |if |in |with |now|also|then|another|more|why|who|where|when)[^?.!\n]{0,40}"
    r"|what about\b[^?.!\n]{0,40}|how about\b[^?.!\n]{0,40}|same (?:for|with|thing|but|again)\b[^?.!\n]{0,30}"
    r"|now,? (?!that\b|is\b|are\b|a\b|days\b)\w+\b[^?.!\n]{0,30}"
    r"|(?:do|try) (?:it |that |this )?again\b[^?.!\n]{0,20}|(?:but|so|then) (?:what|why|how|is|does|can|should|"
    r"would|if)\b[^?.!\n]{0,30}|also\b[^?.!\n]{0,30}|(?:any|what) (?:other|else|more)\b[^?.!\n]{0,30}"
    r"|another (?:one|example|version|way|option|idea)\b[^?.!\n]{0,20}"
    r"|(?:the )?(?:first|second|third|fourth|fifth|last|other) one\b[^?.!\n]{0,20})",
    re.I,
)

# "make it shorter", "rewrite that", "translate them into French" (with no material after).
_EDIT = re.compile(
    r"\b(?P<e>(?:make|rewrite|rephrase|reword|shorten|lengthen|expand|simplify|translate|summarize|summarise|"
    r"condense|elaborate on|redo|revise|edit|change|modify|fix|improve|convert|format|reformat|polish|"
    r"update|adjust|tweak|turn|put|continue|finish|extend|proofread|correct|refactor|optimize|explain|"
    r"repeat|complete|shorten|cut|trim) (?:it|that|this|them|these|those)\b(?: (?:shorter|longer|simpler|"
    r"more \w+|less \w+|\w+er|into \w+|in \w+|to \w+|as \w+|again|for me|please|up|down|out))?)",
    re.I,
)

# Bare edit instructions: the whole message is the instruction, with no object at all.
_BARE_EDIT = re.compile(
    r"^(?:please |can you |could you |now |ok,? |okay,? )?(?P<e>(?:make (?:it )?)?(?:shorter|longer|simpler|"
    r"more (?:formal|casual|concise|detailed|specific|professional|funny|polite|friendly|technical|creative)|"
    r"less (?:formal|technical|wordy|verbose)|continue(?: please)?|go on|keep going|carry on|expand|elaborate|"
    r"summarize|summarise|shorten|simplify|rephrase|rewrite|translate(?: (?:to|into) \w+)?|"
    r"in (?:bullet points|a table|table form|more detail|detail|python|java|javascript|c\+\+|rust|go|french|"
    r"spanish|german|chinese|english)|as a (?:table|list|poem|song|story)|"
    r"give me (?:more|another|other)\b.{0,20}|more(?: please| examples?| details?| ideas?)?|"
    r"explain (?:more|further|again|in more detail)|tell me more\b.{0,20}|try again|again|one more|next|"
    r"why\??|how\??|really\??|example\??|examples\??|such as\??|like what\??|and\??|what else\??|why not\??|"
    r"which one\??|who\??|where\??|when\??|how so\??|what do you mean\??|are you sure\??))"
    r"\s*[?.!]*\s*(?:please|thanks|thank you)?[?.!]*$",
    re.I,
)

_WORD = re.compile(r"[A-Za-z][A-Za-z'’]*|\d+")
_CATAPHORA = re.compile(r"^\s*(?:\w+\s*){0,3}(?:[:\n`\"“(]|(?<!\w)')|^\s*(?:\w+\s+){0,2}(?:below|following)\b", re.I)
_DEMONSTRATIVE_NEXT = re.compile(
    rf"^\s*(?:$|[?.!,;)]|(?:{_DISCOURSE_NOUNS})\b|(?:is|was|'s|’s|sounds|seems|looks|works|doesn't|does|"
    rf"didn't|did|makes|would|will|could|should|can|again|too|more|better|way|kind|sort|type|"
    rf"same|specific|particular|for me|in\b|into\b|to\b|so\b|much|bit|mean|means|right|correct|true|"
    rf"wrong|all|good|ok|okay|two|three|four|both)\b)",
    re.I,
)
_DEMONSTRATIVE_NOUN = re.compile(rf"^\s+({_DISCOURSE_NOUNS})\b", re.I)
# "add error handling to it": a pronoun object closing a one-sentence request.
_TRAILING_OBJECT = re.compile(r"^[^.?!\n]{0,60}\b(?:to|on|about|for|with|from|of|into|in) (it|them)\s*[?.!]*$", re.I)
_LATER_MATERIAL = re.compile(r"[:\n\"“]\s*\S+(?:\s+\S+){2}")
# "these/those" point back almost always, except "those who ...", "these days".
_PLURAL_NOT_ANAPHORIC = re.compile(r"^\s+(?:who|which|that|whose|days|include|are:|include:)\b", re.I)
_ANOTHER = re.compile(r"\b(?:another|one more|a few more|some more)\b", re.I)
_LONG_WORDS = 80
# Greetings and pleasantries: short and content-free, yet they ask nothing of the history.
_SMALL_TALK = re.compile(
    r"\W*(?:hi|hello|hey|yo|good (?:morning|evening|afternoon|night)|thanks?|thank you|"
    r"bye|goodbye|how are you|who are you|what can you do|what are you)\b",
    re.I,
)


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(0).lower().replace("’", "'"), m.start(), m.end()) for m in _WORD.finditer(text)]


def _is_content(word: str) -> bool:
    return word.isdigit() or (len(word) >= 3 and word not in _FUNCTION)


def _is_antecedent(word: str) -> bool:
    """Could ``word`` be what a later pronoun refers to? (A noun-ish content word.)"""
    return _is_content(word) and not _is_verb(word)


def _has_material(text: str) -> bool:
    """The question carries its own material: a code block, a quote, or a long pasted text."""
    return "```" in text or len(_WORD.findall(text)) >= _LONG_WORDS or text.count("\n") >= 3


def _pronoun_reasons(text: str, material: bool) -> list[str]:
    words = _words(text)
    reasons: list[str] = []
    seen_content = False
    for i, (w, start, end) in enumerate(words):
        if w in _PERSONAL or w in _DEMONSTRATIVE:
            rest = text[end:]
            noun = _DEMONSTRATIVE_NOUN.match(rest) if w in _DEMONSTRATIVE else None
            if noun:
                # "this solution": anaphoric unless the question introduced a solution itself
                # or brings the material along ("this sentence: '...'")
                stem = noun.group(1).lower().rstrip("s")
                if not (
                    material
                    or _LATER_MATERIAL.search(rest[noun.end() :])
                    or stem in {x.rstrip("s") for x, _, _ in words[:i]}
                ):
                    reasons.append(f"demonstrative:{w} {noun.group(1).lower()}")
                continue
            if seen_content:
                break  # an antecedent candidate precedes: treat the rest as resolved inside
            if w in _DEMONSTRATIVE:
                if _CATAPHORA.match(rest) and len(_WORD.findall(rest)) >= 3:
                    continue  # "this:", "this code: ```...", "the following": points forward
                plural = w in ("these", "those") and not _PLURAL_NOT_ANAPHORIC.match(rest)
                if not plural and not _DEMONSTRATIVE_NEXT.match(rest):
                    continue  # "that" as a complementizer or relative: "so that", "that I need"
                if w in ("this", "these") and material:
                    continue
                reasons.append(f"demonstrative:{w}")
            else:
                if w == "it" and _EXPLETIVE_IT.search(text[max(0, start - 25) : end + 40]):
                    continue
                reasons.append(f"pronoun:{w}")
        elif _is_antecedent(w):
            seen_content = True
    return reasons


def context_reasons(question: str) -> list[str]:
    """Why ``question`` needs the earlier turns to be understood; ``[]`` means self-contained.

    Reasons are ``kind:evidence`` strings: ``reference:you said``, ``ordinal:the second one``,
    ``ellipsis:what about java``, ``imperative_edit:make it shorter``, ``pronoun:it``,
    ``demonstrative:that``, or ``short_followup``.

    >>> context_reasons("Why is that?")
    ['demonstrative:that']
    >>> context_reasons("What is the capital of France?")
    []
    """
    text = question.strip()
    if not text:
        return []
    head = text if len(text) <= 600 else text[:300] + "\n" + text[-300:]
    reasons: list[str] = []

    def add(reason: str) -> None:
        if reason not in reasons:
            reasons.append(reason)

    colon = re.search(r":\s+(?:\S+\s+){4}", head)
    own = head[: colon.start()] if colon else head  # after "...: <pasted text>" is material, not talk
    for pattern, kind in _EXPLICIT:
        m = pattern.search(own if kind == "ordinal" else head)
        if m:
            add(f"{kind}:{m.group(0).lower().strip()}")
    first_line = text.lstrip().split("\n", 1)[0]
    m = _ELLIPSIS.match(first_line)
    if m and (len(first_line.split()) <= 10 or not _has_material(text)):
        add(f"ellipsis:{m.group('e').lower().strip(' ,')}")
    m = _BARE_EDIT.match(text)
    if m:
        add(f"imperative_edit:{m.group('e').lower().strip(' ?.!')}")
    m = _EDIT.search(head)
    if m and not any(_is_content(w) for w, _, _ in _words(head[: m.start()])):
        after = head[m.end() :]
        if not (_CATAPHORA.match(after) and len(_WORD.findall(after)) >= 3):
            add(f"imperative_edit:{m.group('e').lower()}")
    material = _has_material(text)
    if not material and len(_WORD.findall(text)) <= 15:
        m = _ANOTHER.search(text)
        if m:
            add(f"ellipsis:{m.group(0).lower()}")
    for r in _pronoun_reasons(first_line if material else head, material):
        add(r)
    m = _TRAILING_OBJECT.match(text)
    if m:
        add(f"pronoun:{m.group(1).lower()}")
    words = _WORD.findall(text)
    # A short message with nothing to talk about ("can you give an example?") leans on the chat.
    # The word lists are English: a question in another script has no words here, not few.
    if not reasons and len(words) <= 8 and not any(_is_content(w.lower()) for w in words) and _mostly_latin(text):
        if not _SMALL_TALK.match(text):
            add("short_followup")
    return reasons


def _mostly_latin(text: str) -> bool:
    """At least half the letters are ASCII (no letters at all counts: "?!" is short too)."""
    letters = [c for c in text if c.isalpha()]
    return 2 * sum(c.isascii() for c in letters) >= len(letters)


def is_context_dependent(question: str) -> bool:
    """True when the question refers to something outside itself (see :func:`context_reasons`)."""
    return bool(context_reasons(question))
