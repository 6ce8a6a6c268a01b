"""A multi-turn instruction-following set of our own, with verifiable instructions on every turn.

``parrot/data/verified_mt.jsonl`` holds conversations of 3 to 8 user turns. Each opens with a task
(writing, explanation, planning, advice, summaries, lists, letters, stories, comparisons...) and goes
on with follow-ups that lean on the conversation ("now do the same for...", "shorten that", "add an
example"). Every turn carries one to three IFEval instructions (the 25 ids of google-research's
instruction_following_eval, with IFEval's kwargs names and value ranges), which a checker can verify
on the answer to that turn. An instruction applies to one turn only, or persists ("From now on,
...") until a later turn changes its kwargs ("... instead") or drops it ("You no longer need to
..."). The task prompts and the instruction phrasings were written for this project; nothing is
taken from IFEval, Multi-IF or MT-Bench.

Format: one JSON object per line, FastChat's question schema plus the instructions, so
``parrot eval answer --bench parrot/data/verified_mt.jsonl`` reads it as it is::

    {"question_id": "vmt-001", "category": "advice",
     "turns": ["user message of turn 1", ...],
     "instructions": [[{"id": "punctuation:no_comma", "kwargs": {}, "since": 1, "persist": true}],
                      ...]}

``instructions`` has one list per turn: every instruction active at that turn (persisting ones
carried forward), sorted by id, each with its kwargs and ``since``, the 1-based turn that introduced
it (a change of kwargs re-introduces it). ``persist`` is false for a one-turn instruction. A turn's
message is its task or follow-up text, then the phrasing of each instruction introduced, changed or
dropped at that turn. No turn holds two instructions that IFEval's conflict table says conflict
(``CONFLICTS``, the verifier's, plus a few pairs that cannot both be met, ``ALSO_AVOIDED``), nor one id twice.
For ``combination:repeat_prompt``, ``prompt_to_repeat`` is the turn's text before its instructions.

Generation is seeded and deterministic: only ``random.Random(seed)``, sorted iteration, and
``json.dumps(..., ensure_ascii=False)`` with a fixed key order, one record per "\\n"-ended line. The
committed file is what the default seed gives; regenerate it (byte for byte) with::

    python -m parrot.evaluate.verified_set            # -o src/parrot/data/verified_mt.jsonl --seed 20250611

The verifier (``parrot.evaluate.instructions``) is not needed here; the tests hold the file to it.
"""

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from parrot.evaluate.instructions import CONFLICTS, INSTRUCTION_IDS

DEFAULT_SEED = 20250611
DEFAULT_COUNT = 160
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "verified_mt.jsonl"

# ------------------------------------------------------------------ IFEval's ids and conflicts
IDS = tuple(sorted(INSTRUCTION_IDS))

#: Pairs IFEval allows that no answer could meet together here (case-sensitive section markers,
#: sentence and word counts pulling apart, paragraph layouts of two kinds).
ALSO_AVOIDED = frozenset(
    frozenset(pair)
    for pair in (
        ("detectable_format:multiple_sections", "change_case:english_capital"),
        ("detectable_format:multiple_sections", "change_case:english_lowercase"),
        ("detectable_format:multiple_sections", "length_constraints:number_paragraphs"),
        ("detectable_format:multiple_sections", "length_constraints:nth_paragraph_first_word"),
        ("length_constraints:number_sentences", "length_constraints:number_words"),
        ("length_constraints:number_sentences", "detectable_format:number_bullet_lists"),
        ("length_constraints:nth_paragraph_first_word", "detectable_format:number_bullet_lists"),
        ("length_constraints:number_paragraphs", "detectable_format:number_bullet_lists"),
    )
)

#: One-turn only, and alone or nearly so on their turn (they conflict with most ids).
EXCLUSIVE = (
    "combination:repeat_prompt",
    "combination:two_responses",
    "detectable_format:constrained_response",
    "detectable_format:json_format",
)
#: Ids without kwargs cannot be changed, only dropped.
NO_KWARGS = frozenset(
    {
        "change_case:english_capital",
        "change_case:english_lowercase",
        "detectable_format:title",
        "punctuation:no_comma",
        "startend:quotation",
        *EXCLUSIVE,
    }
)


def clash(a: str, b: str) -> bool:
    return b in CONFLICTS[a] or frozenset((a, b)) in ALSO_AVOIDED


# ------------------------------------------------------------------ kwargs
LANGUAGES = {"de": "German", "es": "Spanish", "fr": "French", "it": "Italian", "pt": "Portuguese"}
KEYWORDS = (
    "anchor", "balance", "bridge", "compass", "garden", "harvest", "journey", "kettle", "ladder",
    "lantern", "mirror", "morning", "patience", "puzzle", "rhythm", "season", "signal", "thread",
    "window", "weather",
)  # fmt: skip
FREQUENT_WORDS = ("clear", "idea", "people", "plan", "simple", "small", "step", "time", "today", "together")
FORBIDDEN = (
    "actually", "basically", "easy", "important", "just", "literally", "really", "simply", "stuff",
    "thing", "very",
)  # fmt: skip
FIRST_WORDS = ("consider", "finally", "first", "honestly", "imagine", "meanwhile", "overall", "still", "today")
END_PHRASES = (
    "Let me know what you think.",
    "That is my best advice.",
    "Hope this helps you decide.",
    "Over to you now.",
    "Any questions before we go on?",
    "Thanks for reading.",
)
RARE_LETTERS = ("j", "k", "q", "v", "x", "z")
COMMON_LETTERS = ("a", "e", "i", "l", "n", "o", "r", "s", "t")
RELATIONS = ("at least", "less than")


def make_kwargs(rng: random.Random, iid: str, text: str) -> dict:
    """kwargs for ``iid`` within IFEval's ranges, in build_description's argument order."""
    if iid == "keywords:existence":
        return {"keywords": sorted(rng.sample(KEYWORDS, 2))}
    if iid == "keywords:frequency":
        relation = rng.choice(RELATIONS)
        low = 2 if relation == "less than" else 1
        return {"keyword": rng.choice(FREQUENT_WORDS), "frequency": rng.randint(low, 3), "relation": relation}
    if iid == "keywords:forbidden_words":
        return {"forbidden_words": sorted(rng.sample(FORBIDDEN, rng.randint(2, 3)))}
    if iid == "keywords:letter_frequency":
        relation = rng.choice(RELATIONS)
        if relation == "less than":
            return {"letter": rng.choice(RARE_LETTERS), "let_frequency": rng.randint(3, 10), "let_relation": relation}
        return {"letter": rng.choice(COMMON_LETTERS), "let_frequency": rng.randint(4, 10), "let_relation": relation}
    if iid == "language:response_language":
        return {"language": rng.choice(sorted(LANGUAGES))}
    if iid == "length_constraints:number_sentences":
        relation = rng.choice(RELATIONS)
        n = rng.randint(4, 12) if relation == "less than" else rng.randint(2, 10)
        return {"num_sentences": n, "relation": relation}
    if iid == "length_constraints:number_paragraphs":
        return {"num_paragraphs": rng.randint(2, 5)}
    if iid == "length_constraints:number_words":
        relation = rng.choice(RELATIONS)
        n = rng.randrange(100, 310, 10) if relation == "less than" else rng.randrange(100, 410, 10)
        return {"num_words": n, "relation": relation}
    if iid == "length_constraints:nth_paragraph_first_word":
        n = rng.randint(2, 5)
        return {"num_paragraphs": n, "nth_paragraph": rng.randint(1, n), "first_word": rng.choice(FIRST_WORDS)}
    if iid == "detectable_content:number_placeholders":
        return {"num_placeholders": rng.randint(1, 4)}
    if iid == "detectable_content:postscript":
        return {"postscript_marker": rng.choice(("P.S.", "P.P.S"))}
    if iid == "detectable_format:number_bullet_lists":
        return {"num_bullets": rng.randint(2, 5)}
    if iid == "detectable_format:number_highlighted_sections":
        return {"num_highlights": rng.randint(1, 4)}
    if iid == "detectable_format:multiple_sections":
        return {"section_spliter": rng.choice(("Section", "SECTION")), "num_sections": rng.randint(2, 5)}
    if iid == "combination:repeat_prompt":
        return {"prompt_to_repeat": text}
    if iid == "startend:end_checker":
        return {"end_phrase": rng.choice(END_PHRASES)}
    if iid == "change_case:capital_word_frequency":
        relation = rng.choice(RELATIONS)
        n = rng.randint(3, 10) if relation == "less than" else rng.randint(2, 8)
        return {"capital_frequency": n, "capital_relation": relation}
    return {}


# ------------------------------------------------------------------ phrasings (written for Parrot)
# Each id has clauses that read after "From now on, " and, capitalised, as a sentence of their own.
# {r} is "your reply" for one turn and "each reply" for a persisting instruction; the other fields
# come from the kwargs (see _fields). DROP is what follows "You no longer need to ".
CLAUSES = {
    "keywords:existence": (
        'mention the words "{k0}" and "{k1}" somewhere in {r}',
        'make sure {r} includes the words "{k0}" and "{k1}"',
    ),
    "keywords:frequency": (
        'use the word "{keyword}" {rel} {frequency} {times} in {r}',
        'make the word "{keyword}" appear {rel} {frequency} {times} in {r}',
    ),
    "keywords:forbidden_words": (
        "do not use the words {words} anywhere in {r}",
        "keep the words {words} out of {r} entirely",
    ),
    "keywords:letter_frequency": (
        'use the letter "{letter}" {rel} {let_frequency} times in {r}',
        'make sure the letter "{letter}" shows up {rel} {let_frequency} times in {r}',
    ),
    "language:response_language": (
        "write {r} entirely in {lang}, with no other language in it",
        "answer only in {lang}, not a word of any other language",
    ),
    "length_constraints:number_sentences": (
        "write {r} in {rel} {num_sentences} sentences",
        "use {rel} {num_sentences} sentences in {r}",
    ),
    "length_constraints:number_paragraphs": (
        "split {r} into exactly {num_paragraphs} paragraphs, separated from each other by a line "
        "holding only the markdown divider ***",
        "give {r} exactly {num_paragraphs} paragraphs with a *** divider line between each pair",
    ),
    "length_constraints:number_words": (
        "keep {r} {rel} {num_words} words long",
        "make {r} {rel} {num_words} words",
    ),
    "length_constraints:nth_paragraph_first_word": (
        "write {r} as exactly {num_paragraphs} paragraphs separated by blank lines, and begin "
        'paragraph {nth_paragraph} with the word "{first_word}"',
        "give {r} exactly {num_paragraphs} paragraphs (one blank line between them), the "
        '{nth_word} of which starts with the word "{first_word}"',
    ),
    "detectable_content:number_placeholders": (
        "include at least {num_placeholders} {placeholders} in square brackets, like [name], in {r}",
        "leave at least {num_placeholders} {blanks} for me to fill in, written in square brackets such as [date]",
    ),
    "detectable_content:postscript": (
        'end {r} with a postscript that starts with "{postscript_marker}"',
        'add a postscript at the end of {r}, opening with "{postscript_marker}"',
    ),
    "detectable_format:number_bullet_lists": (
        'format {r} as exactly {num_bullets} markdown bullet points, each line starting with "* "',
        "put {r} in exactly {num_bullets} bullet points (markdown, one per line) and nothing else",
    ),
    "detectable_format:constrained_response": (
        'reply with exactly one of these and nothing more: "My answer is yes.", "My answer is no.", or '
        '"My answer is maybe."',
    ),
    "detectable_format:number_highlighted_sections": (
        "highlight at least {num_highlights} {parts} of {r} in markdown italics, like *this bit*",
        "mark at least {num_highlights} key {phrases} in {r} with single asterisks, like *this*",
    ),
    "detectable_format:multiple_sections": (
        'organise {r} into {num_sections} sections, each headed "{section_spliter} N" where N is its '
        "number, starting at 1",
        'break {r} into {num_sections} parts, marking each with "{section_spliter} 1", "{section_spliter} 2" and so on',
    ),
    "detectable_format:json_format": (
        "wrap your entire reply in valid JSON (markdown code fences around it are fine)",
        "give your whole reply as a JSON object; you may put it in a ``` code block",
    ),
    "detectable_format:title": (
        "give {r} a title wrapped in double angle brackets, like <<A Fine Title>>",
        "start {r} with a title in double angular brackets, such as <<Notes for Later>>",
    ),
    "combination:two_responses": (
        "give me two different versions of your reply, separated only by a line of six asterisks (******)",
        "write two distinct answers, with six asterisks (******) between them and nowhere else",
    ),
    "combination:repeat_prompt": (
        "begin your reply by repeating my request above word for word (just the request, not these "
        "instructions), then answer it",
        "first copy out my request above exactly as I wrote it (only the request, without this "
        "sentence), and then give your answer",
    ),
    "startend:end_checker": (
        'finish {r} with the exact phrase "{end_phrase}" with nothing after it',
        'make "{end_phrase}" the very last words of {r}',
    ),
    "change_case:capital_word_frequency": (
        "use {rel} {capital_frequency} words written in ALL CAPITAL LETTERS in {r}",
        "include {rel} {capital_frequency} fully capitalised words (like THIS) in {r}",
    ),
    "change_case:english_capital": (
        "write {r} in English using capital letters only, no lowercase at all",
        "put {r} entirely in English upper case",
    ),
    "change_case:english_lowercase": (
        "write {r} in English using lowercase letters only, no capitals anywhere",
        "put {r} entirely in English lower case, with not a single capital letter",
    ),
    "punctuation:no_comma": (
        "do not use any commas at all",
        "leave out commas completely",
    ),
    "startend:quotation": (
        "wrap {r} in double quotation marks from beginning to end",
        "put the whole of {r} inside one pair of double quotes",
    ),
}
DROP = {
    "keywords:existence": 'work the words "{k0}" and "{k1}" in',
    "keywords:frequency": 'count how often you use the word "{keyword}"',
    "keywords:forbidden_words": "avoid the words {words}",
    "keywords:letter_frequency": 'keep track of the letter "{letter}"',
    "language:response_language": "write in {lang}",
    "length_constraints:number_sentences": "stick to a sentence count",
    "length_constraints:number_paragraphs": "use the *** paragraph dividers",
    "length_constraints:number_words": "keep to a word count",
    "length_constraints:nth_paragraph_first_word": 'use {num_paragraphs} paragraphs or start one with "{first_word}"',
    "detectable_content:number_placeholders": "include placeholders in square brackets",
    "detectable_content:postscript": "add a postscript",
    "detectable_format:number_bullet_lists": "use bullet points",
    "detectable_format:number_highlighted_sections": "highlight anything in italics",
    "detectable_format:multiple_sections": 'split replies into "{section_spliter}" parts',
    "detectable_format:title": "add a title",
    "startend:end_checker": 'end with "{end_phrase}"',
    "change_case:capital_word_frequency": "watch how many words are in capitals",
    "change_case:english_capital": "write in capital letters",
    "change_case:english_lowercase": "write in lowercase only",
    "punctuation:no_comma": "avoid commas",
    "startend:quotation": "wrap replies in quotation marks",
}
ONE_TURN_LEADS = ("", "", "For this reply only, ", "Just this once, ")
PERSIST_LEADS = ("From now on, ", "For the rest of our conversation, ", "Until I say otherwise, ")
CHANGE_LEADS = ("From now on, ", "Let's change that rule: from now on, ", "New rule from here on: ")
DROP_LEADS = ("You no longer need to ", "There's no need to {x} any more.")
_ORDINAL = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


def _fields(kwargs: dict, persist: bool) -> dict:
    out = dict(kwargs)
    out["r"] = "each reply" if persist else "your reply"
    if "keywords" in kwargs:
        out["k0"], out["k1"] = kwargs["keywords"]
    for key in ("relation", "let_relation", "capital_relation"):
        if key in kwargs:
            out["rel"] = "fewer than" if kwargs[key] == "less than" else "at least"
    if "frequency" in kwargs:
        out["times"] = "time" if kwargs["frequency"] == 1 else "times"
    if "forbidden_words" in kwargs:
        words = [f'"{w}"' for w in kwargs["forbidden_words"]]
        out["words"] = ", ".join(words[:-1]) + " or " + words[-1]
    if "language" in kwargs:
        out["lang"] = LANGUAGES[kwargs["language"]]
    if "nth_paragraph" in kwargs:
        out["nth_word"] = _ORDINAL[kwargs["nth_paragraph"]]
    plural = kwargs.get("num_placeholders", kwargs.get("num_highlights", 2)) != 1
    out["placeholders"] = "placeholders" if plural else "placeholder"
    out["blanks"] = "blanks" if plural else "blank"
    out["parts"] = "parts" if plural else "part"
    out["phrases"] = "phrases" if plural else "phrase"
    return out


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "?", "!", '."')) else ".")


def phrase_add(rng: random.Random, iid: str, kwargs: dict, persist: bool, change: bool) -> str:
    clause = rng.choice(CLAUSES[iid]).format(**_fields(kwargs, persist))
    if not persist:
        return _sentence(rng.choice(ONE_TURN_LEADS) + clause)
    lead = rng.choice(CHANGE_LEADS if change else PERSIST_LEADS)
    return lead + clause + (" instead." if change else ".")


def phrase_drop(rng: random.Random, iid: str, kwargs: dict) -> str:
    what = DROP[iid].format(**_fields(kwargs, True))
    lead = rng.choice(DROP_LEADS)
    return lead.format(x=what) if "{x}" in lead else lead + what + "."


# ------------------------------------------------------------------ tasks (written for Parrot)
# (category, opening with a {} slot, three fillers). The opening uses one filler; a SAME_FOR
# follow-up restates it with another.
TASKS = (
    ("writing", "Write a short welcome note for new members of {}.",
     ("a community choir", "a neighbourhood running club", "a weekend chess circle")),
    ("writing", "Draft a product description for {}.",
     ("a refillable glass water bottle", "a foldable laptop stand", "a solar-powered garden lamp")),
    ("writing", "Write the opening paragraph of a blog post about {}.",
     ("learning to cook at forty", "switching from a car to a bicycle", "keeping a paper journal")),
    ("writing", "Write a toast for {}.",
     ("my sister's wedding", "a colleague's retirement party", "my grandparents' golden anniversary")),
    ("writing", "Write a short speech for {}.",
     ("the opening of a small town library", "a school science fair", "the first day of a charity run")),
    ("writing", "Come up with a slogan and a one-paragraph pitch for {}.",
     ("a repair café", "a tool-lending library", "a mobile bike repair service")),
    ("explanation", "Explain how {} works to someone with no technical background.",
     ("a heat pump", "a credit score", "public-key encryption")),
    ("explanation", "Explain why {}.",
     ("bread goes stale", "the sky looks blue during the day", "leaves change colour in autumn")),
    ("explanation", "What is {}, and why does it matter?",
     ("compound interest", "soil erosion", "herd immunity")),
    ("explanation", "Describe how {} is made, step by step.",
     ("paper", "cheese", "glass")),
    ("explanation", "Explain the idea of {} using an everyday analogy.",
     ("inflation", "a computer's memory cache", "photosynthesis")),
    ("explanation", "Teach me the basic rules of {}.",
     ("badminton", "the card game cribbage", "curling")),
    ("planning", "Help me plan {}.",
     ("a three-day trip to Lisbon on a modest budget", "a week of vegetarian dinners for two",
      "a surprise birthday picnic for ten people")),
    ("planning", "Make a study plan for {} over the next month.",
     ("learning basic Spanish", "passing a driving theory test", "getting started with statistics")),
    ("planning", "Outline a training schedule for {}.",
     ("a first 10k run", "a beginner's hiking season", "swimming a mile without stopping")),
    ("planning", "Plan the agenda for {}.",
     ("a half-day team workshop", "a neighbourhood clean-up morning", "a parents' evening at school")),
    ("planning", "Suggest a routine for {}.",
     ("a calmer weekday morning", "winding down before sleep", "keeping a small flat tidy")),
    ("planning", "Help me organise {}.",
     ("a garage sale", "a book swap at work", "a move to a new flat")),
    ("advice", "I'm nervous about {}. What advice would you give me?",
     ("my first job interview", "speaking at a friend's wedding", "starting at a new school")),
    ("advice", "How should I go about {}?",
     ("asking my manager for a raise", "choosing my first houseplants", "saving for a deposit on a flat")),
    ("advice", "What should I keep in mind when {}?",
     ("buying a second-hand car", "adopting a rescue dog", "renting out a spare room")),
    ("advice", "Give me some advice on {}.",
     ("staying focused while working from home", "making friends in a new city",
      "getting back into reading")),
    ("advice", "My friend wants to {}. How can I support them?",
     ("quit smoking", "change careers at fifty", "train for a marathon")),
    ("advice", "What are good ways to {}?",
     ("cut down on food waste at home", "reduce screen time in the evening", "lower a household energy bill")),
    ("summary", "Summarise the main arguments for and against {}.",
     ("a four-day working week", "school uniforms", "banning cars from city centres")),
    ("summary", "Give me a short overview of {}.",
     ("the history of the bicycle", "how the printing press changed Europe", "the life cycle of a star")),
    ("summary", "Summarise what a newcomer should know about {}.",
     ("composting", "birdwatching", "home brewing of kombucha")),
    ("summary", "Sum up the key ideas behind {}.",
     ("the scientific method", "supply and demand", "minimalism as a lifestyle")),
    ("list", "List some practical ideas for {}.",
     ("a rainy Sunday with kids", "a low-cost date night", "using up leftover rice")),
    ("list", "Give me a packing list for {}.",
     ("a weekend of camping", "a business trip of three days", "a beach holiday with a toddler")),
    ("list", "What are some good questions to ask {}?",
     ("a landlord before signing a lease", "a doctor about a new prescription",
      "an interviewer at the end of an interview")),
    ("list", "List the tools a beginner needs for {}.",
     ("woodworking", "watercolour painting", "bread baking")),
    ("list", "Suggest some names for {}.",
     ("a small bakery by the sea", "a podcast about local history", "a grey rescue cat")),
    ("letter", "Write a letter to {}.",
     ("my landlord asking to repair a leaking roof", "a local council asking for a new crossing",
      "a former teacher to thank her")),
    ("letter", "Draft an email to {}.",
     ("a client explaining a delayed delivery", "my team announcing a new schedule",
      "a hotel asking about accessible rooms")),
    ("letter", "Write a short note to {}.",
     ("a neighbour whose parcel I took in", "a friend who just moved abroad",
      "a colleague recovering from surgery")),
    ("letter", "Write a cover letter for {}.",
     ("a junior gardener position", "a part-time library assistant job", "a barista role in a busy café")),
    ("story", "Write a short story about {}.",
     ("a lighthouse keeper who finds a message in a bottle", "a robot learning to bake",
      "two strangers stuck in a lift")),
    ("story", "Tell a bedtime story about {}.",
     ("a sleepy hedgehog", "a cloud that wanted to be a boat", "a tiny dragon afraid of the dark")),
    ("story", "Write a fable with a clear moral about {}.",
     ("a proud oak tree", "a clever crow and a greedy fox", "an ant who never rested")),
    ("story", "Write the first scene of a mystery set in {}.",
     ("a snowed-in mountain hotel", "a busy fish market", "a museum after closing time")),
    ("story", "Write a short poem about {}.",
     ("the first frost", "a city at dawn", "an old pair of boots")),
    ("comparison", "Compare {} for a first-time buyer.",
     ("an e-reader and paper books", "renting and buying a bicycle", "a gas hob and an induction hob")),
    ("comparison", "What are the differences between {}?",
     ("a latte and a flat white", "weather and climate", "a virus and a bacterium")),
    ("comparison", "Which is better for a small garden: {}?",
     ("raised beds or pots", "a lawn or a wildflower meadow", "a shed or a storage bench")),
    ("comparison", "Compare the pros and cons of {}.",
     ("learning an instrument as a child or as an adult", "working in an office or remotely",
      "taking a train or flying for a 600 km trip")),
    ("howto", "Walk me through {}.",
     ("changing a bicycle tyre", "setting up a simple monthly budget", "repotting a large plant")),
    ("howto", "How do I {}?",
     ("make a sourdough starter", "remove a red wine stain from a carpet", "back up my phone's photos")),
)  # fmt: skip

FOLLOW_UPS = (
    "Shorten that to the essentials.",
    "Add a concrete example to what you just wrote.",
    "Make the tone of that warmer and more personal.",
    "Rewrite it so a twelve-year-old could follow it.",
    "What did you leave out that someone should really know?",
    "Turn that into a checklist I can keep on the fridge.",
    "Give it a stronger opening.",
    "Go deeper on the point you made second.",
    "Now argue the opposite view briefly.",
    "Summarise your last answer.",
    "What mistakes do people usually make with this?",
    "Make it more formal, as if for a newsletter.",
    "Could you make it funnier without losing the substance?",
    "Which part of your answer matters most, and why?",
    "Rewrite that from the point of view of someone who disagrees.",
    "Add a short section on costs.",
    "Cut the jargon and say it plainly.",
    "Give me a version I could read aloud in one minute.",
    "What would you change if I had only half the time?",
    "Add one surprising fact related to this.",
    "Now make it more concise and punchy.",
    "Expand on the last part of that.",
    "Suggest a good follow-up step after this.",
    "Rework your answer for someone who is already an expert.",
    "What questions might a sceptical reader ask about that?",
    "Put the most important point first and rewrite the rest around it.",
    "Add a brief note on what to avoid.",
    "Rewrite it as advice from an old friend.",
)
#: Follow-ups that ask for the same answer to the opening with another filler (the whole opening is
#: restated, since fillers are noun phrases for some tasks and verb phrases for others).
SAME_FOR = (
    "Now do the same for this one: {}",
    "Great. Next, the same kind of answer for this: {}",
    "Let's do another in the same way. {}",
)
YES_NO = (
    "Would you say this works for someone on a tight budget?",
    "Is this something a beginner could manage alone?",
    "Do you think most people get this wrong?",
    "Would your answer still hold ten years from now?",
    "Is it worth the effort, all things considered?",
    "Could all of this be done in a single weekend?",
    "Would you follow this advice yourself?",
    "Is there any real risk in trying this?",
)


# ------------------------------------------------------------------ generation
class _Inst:
    __slots__ = ("iid", "kwargs", "since", "persist")

    def __init__(self, iid, kwargs, since, persist):
        self.iid, self.kwargs, self.since, self.persist = iid, kwargs, since, persist

    def record(self) -> dict:
        return {"id": self.iid, "kwargs": self.kwargs, "since": self.since, "persist": self.persist}


def _pick_new(rng: random.Random, used: Counter, allowed: list[str]) -> str:
    """An id from ``allowed`` (sorted), favouring the ones used least so far."""
    weights = [(0.08 if iid == "language:response_language" else 1.0) / (1 + used[iid]) ** 2 for iid in allowed]
    return rng.choices(allowed, weights=weights)[0]


def _conversation(rng: random.Random, number: int, task: tuple, filler: str, used: Counter) -> dict:
    category, opening, fillers = task
    n_turns = rng.choice((3, 4, 4, 5, 5, 5, 6, 6, 7, 8))
    others = [f for f in fillers if f != filler]
    follow_ups = rng.sample(FOLLOW_UPS, n_turns)
    same_for_turn = rng.randint(2, n_turns) if rng.random() < 0.6 else 0
    yes_no = rng.sample(YES_NO, 4)
    active: dict[str, _Inst] = {}
    turns, per_turn = [], []
    for t in range(1, n_turns + 1):
        kept = {iid: inst for iid, inst in active.items() if inst.persist}
        previous = set(active)
        notes_drop, notes_change, notes_new = [], [], []
        exclusive = None
        if rng.random() < (0.06 if t == 1 else 0.16):
            choices = [e for e in EXCLUSIVE if t > 1 or e != "detectable_format:constrained_response"]
            exclusive = _pick_new(rng, used, [e for e in choices if e not in previous])
        if exclusive == "detectable_format:constrained_response":
            text = yes_no.pop()
        elif t == 1:
            text = opening.format(filler)
        elif t == same_for_turn and others:
            text = rng.choice(SAME_FOR).format(opening.format(others.pop(rng.randrange(len(others)))))
        else:
            text = follow_ups[t - 1]
        # Drops: anything clashing with the exclusive, else now and then once it has held two turns.
        for iid in sorted(kept):
            forced = exclusive and (clash(iid, exclusive) or len(kept) > 2)
            if forced or (t - kept[iid].since >= 2 and rng.random() < 0.22):
                notes_drop.append(phrase_drop(rng, iid, kept.pop(iid).kwargs))
        # A change of kwargs.
        changeable = [iid for iid in sorted(kept) if iid not in NO_KWARGS]
        if changeable and not exclusive and rng.random() < 0.3:
            iid = rng.choice(changeable)
            old = kept[iid].kwargs
            new = make_kwargs(rng, iid, text)
            while new == old:
                new = make_kwargs(rng, iid, text)
            kept[iid] = _Inst(iid, new, t, True)
            notes_change.append(phrase_add(rng, iid, new, True, change=True))
        new_ids = []
        if exclusive:
            new_ids.append(exclusive)
            room = 1 if rng.random() < 0.3 else 0
        else:
            room = rng.choice((1, 1, 2, 2, 3)) if t == 1 else rng.choice((0, 0, 1, 1, 1, 2))
        if not kept and not exclusive:
            room = max(room, 1)
        room = min(room, 3 - len(kept) - len(new_ids))
        for _ in range(room):
            taken = set(kept) | set(new_ids)
            allowed = [
                iid
                for iid in IDS
                if iid not in EXCLUSIVE and iid not in previous and not any(clash(iid, other) for other in taken)
            ]
            if allowed:
                new_ids.append(_pick_new(rng, used, allowed))
        current = dict(kept)
        for iid in new_ids:
            persist = iid not in EXCLUSIVE and rng.random() < 0.5
            current[iid] = _Inst(iid, make_kwargs(rng, iid, text), t, persist)
            used[iid] += 1
        # The repeat request sits right after the text it asks to repeat.
        order = sorted(new_ids, key=lambda iid: (iid != "combination:repeat_prompt", iid))
        for iid in order:
            inst = current[iid]
            notes_new.append(phrase_add(rng, iid, inst.kwargs, inst.persist, change=False))
        head = notes_new[:1] if order[:1] == ["combination:repeat_prompt"] else []
        turns.append(" ".join([text, *head, *notes_drop, *notes_change, *notes_new[len(head) :]]))
        per_turn.append([current[iid].record() for iid in sorted(current)])
        active = current
    return {
        "question_id": f"vmt-{number:03d}",
        "category": category,
        "turns": turns,
        "instructions": per_turn,
    }


def generate(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT) -> list[dict]:
    """``count`` conversations; the same seed gives the same list."""
    rng = random.Random(seed)
    openings = [(i, filler) for i in range(len(TASKS)) for filler in TASKS[i][2]]
    order: list[tuple[int, str]] = []
    while len(order) < count:
        batch = list(openings)
        rng.shuffle(batch)
        order.extend(batch)
    used: Counter = Counter()
    return [_conversation(rng, n + 1, TASKS[i], filler, used) for n, (i, filler) in enumerate(order[:count])]


def dumps(records: list[dict]) -> str:
    return "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)


def write(path: str | Path = DEFAULT_PATH, seed: int = DEFAULT_SEED) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(dumps(generate(seed)))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m parrot.evaluate.verified_set", description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", default=str(DEFAULT_PATH), help="where to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    print(write(args.output, args.seed))


if __name__ == "__main__":
    main()
