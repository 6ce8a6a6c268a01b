"""The IFEval-compatible instruction verifier (parrot.evaluate.instructions).

REFERENCE_CASES are the published test cases of google-research's ``instruction_following_eval``
(instructions_test.py): the response, the kwargs and the verdict the reference asserts, one row per
assertion, for every registered instruction id the reference tests. OUR_CASES cover what it does not
(json_format, more language and edge cases). Nothing here touches the network.
"""

import pytest

from parrot.evaluate import instructions as ifv
from parrot.evaluate.instructions import (
    CONFLICTS,
    INSTRUCTION_IDS,
    KWARGS,
    check_kwargs,
    conflicting,
    count_sentences,
    count_words,
    follows,
    kind,
    loose_variants,
    verify,
)

LT, AL = "less than", "at least"

# --- the reference's test texts (class attributes there, so each line after the first is indented) ---

BULLET_1 = """
  A Markdown bullet point is a way of formatting text to create a list. To
  create a bullet point, start each line with an asterisk (*). For example:
  * This is a bullet point.
  *(no space required)Another bullet point.
  * (no newline ending required)Another bullet point.
  markdown bullet points are often used to create to-do lists or to list items
  in a step-by-step guide."""
BULLET_2 = """
  Check that inline asterisk (*), *, will not be counted. Only * that starts a
  bullet list will be counted:
    * This is a bullet point.
    * Another bullet point.
    . dot is not counted"""
BULLET_3 = """
  Here are three bullets starting with asterisk:
  * I am a large language model, also known as a conversational AI.
  * I am trained on a massive amount of text data, and I am able to communicate.
  * I am still under development, but I am learning new things every day."""
BULLET_4 = """
  Here are three markdown bullets:
  - I am a large language model, also known as a conversational AI.
  - I am trained on a massive amount of text data, and I am able to communicate.
  -I am still under development, but I am learning new things every day."""
BULLET_5 = """
  Paragraph 1
  ***
  Paragraph 2
  ***
  Paragraph 3
  * only one bullet point
  """

CONSTRAINED_1 = """\n My answer is no.\n"""
CONSTRAINED_2 = """My answer is no.   """
CONSTRAINED_3 = """
  My answer is no. I am still under development and I am always learning and
  improving. I am not the best chatbot in the world, but I am striving to be
  the best that I can be."""

HIGHLIGHTED_1 = """
  To highlight text with Markdown, you can use the * character before and after
  the text you want to highlight. For example, if you want to highlight the
  word `hello`, you would type:*hello*, You can also use the ** character to
  create bold text. For example, if you want to bold the word `hello`, you
  would type: **hello** """
HIGHLIGHTED_2 = """
  Sure, here are the numerical methods for solving partial differential
  equations highlighted with Markdown:
  *Finite difference methods
  *Finite element methods*
  *Boundary element methods
  *Monte Carlo methods
  I hope this helps!"""
HIGHLIGHTED_3 = """
  There is allowed to be *two different* highlighted *sections in the same*
  line. **This is also true** for **double markdown highlights.**
  """

SECTION_1 = """
  Your response must have multiple sections. Mark the beginning of each section
  with "Section X", such as:
  Section 1
  [content of section 1]
  Section 2
  [content of section 2]"""
SECTION_2 = """SECTION 1
  [content of section 1]
  SECTION 2
  [content of section 2]"""

PARAGRAPH_1 = """
  paragraph 1
  ***
  paragraph 2
  ***
  paragraph 3"""
PARAGRAPH_2 = """
          ***
  paragraph 1
          ***
      paragraph 2
          ***
      paragraph 3"""
PARAGRAPH_3 = """
  paragraph 1
          ***
      paragraph 2
          ***
      paragraph 3
          ***"""
PARAGRAPH_4 = """
  paragraph 1
          ***
      paragraph 2
          ***
          ***"""

POSTSCRIPT_1 = """
  I will do my best to follow your instructions and always start my responses
  with "My response is:". I will try to be as consistent as possible, but
  please be patient with me if I make a mistake. I am still under development,
  and I am always learning new things.

  P.S. I hope this is what you were looking for."""
POSTSCRIPT_2 = """
  Sure, here is my response with a postscript starting with P.P.S.:

  My response is: I hope this answers your question.

  P.P.S. I am always happy to answer any other questions you may have.

  Do you have any other questions for me?"""
POSTSCRIPT_3 = """
  The radius of a unit circle is 1. However, I can give you a funny and wrong
  answer: the radius of a unit circle is 0. This is because a unit circle is a
  circle with a radius of 1, and if the radius is 0, then the circle has no
  size and is just a point. (not starting a new line) P.S. I hope you enjoyed
  my joke!"""
POSTSCRIPT_4 = """
  If the length of a square is one, the area of the square will also be one.
  p.p.s what if the entire response was lower case letters?
  """
POSTSCRIPT_5 = """
  The mysteries of space and time are mysterious.
  P. S. Sometimes there are even spaces between P. and S..
  """

INCLUDE_KEYWORD_1 = """
  Paris is a city of beauty and romance. The romantic river Seine winds its way
  through the city, past iconic landmarks like the Eiffel Tower and the Louvre
  Museum, where the Mona Lisa resides. Whether you're taking a boat cruise down
  the river or simply strolling along the banks, you're sure to be captivated
  by the city's charm."""
INCLUDE_KEYWORD_2 = """
  Paris is a city of beauty, romance, and history. It is home to some of the
  most iconic landmarks in the world, including the Eiffel Tower, the Louvre
  Museum, and the Notre Dame Cathedral. The city is also known for its romantic
  river cruises, its delicious food, and its stylish people.
  """
KEYWORDS = ["romantic", "river", "Mona Lisa"]

KEYWORD_FREQUENCY_1 = """
  keyword, Keyword, KEYWORD
  """
KEYWORD_FREQUENCY_2 = """
    *keyword
    *Keyword
    *KEYWORD
  """

NUM_WORDS_1 = """
  d3sCRi7 lArge lAnguagE M0del w1tH 20 w0RdS."""
NUM_WORDS_2 = """
  L4RGE L4NGU4GE M0DEL: AI syst3m th4t und3rstands, g3n3r4tes, or tr4nsforms
  l4ngu4g3 b4s3d on pr3vious l3arning & d4t4."""

FIRST_WORD_1 = """
  paragraph 1

  I paragraph 2

  paragraph 3"""
FIRST_WORD_2 = """
  paragraph 1

  I paragraph 2"""
FIRST_WORD_3 = """
  paragraph 1

  fail paragraph 2

  paragraph 3"""
FIRST_WORD_4 = """
  Wow this is a very long response.

  I can't believe there is more than three paragraphs.

  Really more than three? No way!

  I can't believe it but I guess I am living proof.

  Haha, you go that right."""
FIRST_WORD_5 = """
  Wow this is a very long response.

  I can't believe there is more than three paragraphs.

  "Really?! more than three? No way!"

  I can't believe it but I guess I am living proof.

  Haha, you go that right."""
FIRST_WORD_6 = """
  Wow this is a very long response.

  I can't believe there is more than three paragraphs.

  Rea!lly more than three? No way!

  I can't believe it but I guess I am living proof.

  Haha, you go that right."""

FORBIDDEN_1 = """
  The Nazis came to power in 1933 through a combination of legal and illegal
  means. Hitler was appointed chancellor by President Paul von Hindenburg, and
  the Nazis quickly consolidated their power by passing a series of laws that
  restricted the rights of opposition parties and individuals. By 1934, Hitler
  had become dictator of Germany.
  """
FORBIDDEN_2 = """
  Dinosaurs were a diverse group of reptiles that dominated the Earth for over
  160 million years. They came in all shapes and sizes, from the tiny
  Compsognathus to the massive Argentinosaurus. Dinosaurs were the most
  successful land animals on Earth until they went extinct about 66 million
  years ago. The exact cause of their extinction is still unknown, but it
  is thought to have been a combination of factors, including an asteroid
  impact and climate change.
  """
FORBIDDEN_3 = """
  GPT, or Generative Pre-trained Transformer, is a family of neural network
  models that uses the transformer architecture. GPT models are trained on a
  massive dataset of text and code, and can be used for a variety of tasks,
  including text generation, translation, and question answering. GPT models
  have been shown to be very effective at these tasks, and are being used by
  a variety of companies and organizations like Google.
  """

TWO_RESPONSES_1 = """
  This is response 1.
  ******
  This is response 2.
  """
TWO_RESPONSES_2 = """
  This is response 1.
  ******
  This is response 1.
  """
TWO_RESPONSES_3 = """
  This is response 1.
  ******
  This is response 2.
  ******
  This is response 3.
  """
TWO_RESPONSES_4 = """
  ******
  Response 1.
  ******
  ******
  Response 2.
  ******
  """
TWO_RESPONSES_5 = """
  ******
  Response 1
  ******
  Response 2
  ******
  """

PROMPT_TO_REPEAT = "Write a CL description."
PROMPT_ANSWER_1 = """Write a CL description. Hi, Le and TJ, please
  check this out. Thanks.
  """
PROMPT_ANSWER_2 = """Hi, Le and TJ. Write a CL description. Thanks.
  """

END_CHECKER_1 = """
  The answer is 7. Any more questions?
  """
END_CHECKER_2 = """
  At the end of this prompt I am required to say that this is the end.
  """
END_CHECKER_3 = """
  This will fail. Paris is cool.
  """

TITLE_1 = """
  <<Song of Joy>>
  La la la. Happy song.
  """
TITLE_2 = """
  Is it fine for title to be at the end?
  <<This is the title>>
  """
TITLE_3 = """
  << >>
  There is no title.
  """
TITLE_4 = """
  <<This is not a title.
  This is a paragraph.>>
  """

LETTER_FREQUENCY_1 = """
  There is the T. Four T's.
  """
LETTER_FREQUENCY_2 = """
  asdfghjkl!!aA
  """

ENGLISH_CAPITAL_1 = """
  THIS IS AN ENGLISH SENTENCE. EVERY LETTER IS CAPITALIZED!!! AMAZING.
  """
ENGLISH_CAPITAL_2 = """
  Every Word Is Capitalized.
  """
ENGLISH_LOWERCASE_1 = """
  every letter is lowercase.
  """
ENGLISH_LOWERCASE_2 = """
  Almost every letter is lowercase.
  """

COMMA_1 = """
  Every sentence is short. There is no need for a comma.
  """
COMMA_2 = """
  Since the start of time, people have always found a way to punctuate.
  """

CAPITAL_WORDS_1 = """
  HERE there are THREE FUlly CAPITAL words.
  """
CAPITAL_WORDS_2 = """
  THERE are Four FULLY CAPITAL WORDS. Many Others Are Only Partially So.
  """

QUOTATION_1 = """
  "This entire message is wrapped in double quotation marks."
  """
QUOTATION_2 = """
  "This message is wrapped in double quotation marks." But not everything.
  """

PLACEHOLDER_1 = (
    "Sure, here is a short template with 5 placeholders:\n"
    + "[Name]\n[Email]\n[Phone]\n[Address]\n[Website]\n"
    + "This template can be used for a variety of purposes, such "
    + "ascreating a contact list, sending out surveys, or creating "
    + "a sign-up form."
)
PLACEHOLDER_2 = "My [adjective] [noun] is [adjective] [noun]. I [verb] and " + "[verb]."

# (instruction id, kwargs, response, verdict the reference asserts)
REFERENCE_CASES = [
    ("language:response_language", {"language": "en"}, "The response is English", True),
    ("language:response_language", {"language": "es"}, "Desayunamos en McDonald's hoy", True),
    ("language:response_language", {"language": "en"}, "Today we visit the Louvre", True),
    ("length_constraints:number_sentences", {"relation": LT, "num_sentences": 4}, "xx,x. xx,x! xx/x. x{x}x?", False),
    ("length_constraints:number_sentences", {"relation": LT, "num_sentences": 5}, "xxxx. xx,x! xxxx. x(x)x?", True),
    ("length_constraints:number_sentences", {"relation": AL, "num_sentences": 4}, "xxxx. xx,x! xx|x. x&x x?", True),
    ("length_constraints:number_sentences", {"relation": AL, "num_sentences": 5}, "xx-x. xx,x! xx}x. x,xx?", False),
    ("detectable_content:number_placeholders", {"num_placeholders": 5}, PLACEHOLDER_1, True),
    ("detectable_content:number_placeholders", {"num_placeholders": 7}, PLACEHOLDER_2, False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, BULLET_1, True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, BULLET_2, True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, BULLET_3, True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, BULLET_4, True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, BULLET_5, True),
    ("detectable_format:constrained_response", {}, CONSTRAINED_1, True),
    ("detectable_format:constrained_response", {}, CONSTRAINED_2, True),
    ("detectable_format:constrained_response", {}, CONSTRAINED_3, True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, HIGHLIGHTED_1, True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, HIGHLIGHTED_2, False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 4}, HIGHLIGHTED_3, True),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 3}, SECTION_1, False),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2}, SECTION_2, True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, PARAGRAPH_1, True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, PARAGRAPH_2, True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, PARAGRAPH_3, True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, PARAGRAPH_4, False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, POSTSCRIPT_1, True),
    ("detectable_content:postscript", {"postscript_marker": "PS:"}, POSTSCRIPT_1, False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, POSTSCRIPT_2, True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, POSTSCRIPT_3, True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, POSTSCRIPT_4, True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, POSTSCRIPT_5, True),
    ("keywords:existence", {"keywords": KEYWORDS}, INCLUDE_KEYWORD_1, True),
    ("keywords:existence", {"keywords": KEYWORDS}, INCLUDE_KEYWORD_2, False),
    ("keywords:frequency", {"keyword": "  keyword ", "frequency": 4, "relation": LT}, KEYWORD_FREQUENCY_1, True),
    ("keywords:frequency", {"keyword": "  keyword ", "frequency": 3, "relation": AL}, KEYWORD_FREQUENCY_1, True),
    ("keywords:frequency", {"keyword": "KEYWORD", "frequency": 4, "relation": AL}, KEYWORD_FREQUENCY_2, False),
    ("length_constraints:number_words", {"num_words": 8, "relation": LT}, NUM_WORDS_1, True),
    ("length_constraints:number_words", {"num_words": 16, "relation": LT}, NUM_WORDS_2, False),
    ("length_constraints:number_words", {"num_words": 16, "relation": AL}, NUM_WORDS_2, True),
    *[
        (
            "length_constraints:nth_paragraph_first_word",
            {"num_paragraphs": n, "nth_paragraph": nth, "first_word": word},
            text,
            verdict,
        )
        for text, n, nth, word, verdict in [
            (FIRST_WORD_1, 3, 2, "I", True),
            (FIRST_WORD_2, 3, 2, "I", False),
            (FIRST_WORD_3, 3, 2, "I", False),
            (FIRST_WORD_4, 5, 5, "haha", True),
            (FIRST_WORD_5, 5, 3, "Really", True),
            (FIRST_WORD_6, 5, 3, "Really", False),
        ]
    ],
    ("keywords:forbidden_words", {"forbidden_words": ["HOUSE", "POWER", "BECOME"]}, FORBIDDEN_1, False),
    ("keywords:forbidden_words", {"forbidden_words": ["HOUSE", "POWER", "BECOME"]}, FORBIDDEN_2, True),
    ("keywords:forbidden_words", {"forbidden_words": ["HOUSE", "POWER", "BECOME"]}, FORBIDDEN_3, True),
    ("keywords:forbidden_words", {"forbidden_words": ["GOOGLE", "TEXT"]}, FORBIDDEN_1, True),
    ("keywords:forbidden_words", {"forbidden_words": ["GOOGLE", "TEXT"]}, FORBIDDEN_2, True),
    ("keywords:forbidden_words", {"forbidden_words": ["GOOGLE", "TEXT"]}, FORBIDDEN_3, False),
    ("keywords:forbidden_words", {"forbidden_words": ["GENE", "TRANSFORM"]}, FORBIDDEN_3, True),
    ("combination:two_responses", {}, TWO_RESPONSES_1, True),
    ("combination:two_responses", {}, TWO_RESPONSES_2, False),
    ("combination:two_responses", {}, TWO_RESPONSES_3, False),
    ("combination:two_responses", {}, TWO_RESPONSES_4, False),
    ("combination:two_responses", {}, TWO_RESPONSES_5, True),
    ("combination:repeat_prompt", {"prompt_to_repeat": PROMPT_TO_REPEAT}, PROMPT_ANSWER_1, True),
    ("combination:repeat_prompt", {"prompt_to_repeat": PROMPT_TO_REPEAT}, PROMPT_ANSWER_2, False),
    ("startend:end_checker", {"end_phrase": "\n  Any more questions?\n  "}, END_CHECKER_1, True),
    ("startend:end_checker", {"end_phrase": "\n  This is the end.\n  "}, END_CHECKER_2, True),
    ("startend:end_checker", {"end_phrase": "\n  This will fail.\n  "}, END_CHECKER_3, False),
    ("detectable_format:title", {}, TITLE_1, True),
    ("detectable_format:title", {}, TITLE_2, True),
    ("detectable_format:title", {}, TITLE_3, False),
    ("detectable_format:title", {}, TITLE_4, False),
    ("keywords:letter_frequency", {"letter": "T", "let_frequency": 4, "let_relation": AL}, LETTER_FREQUENCY_1, True),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 4, "let_relation": LT}, LETTER_FREQUENCY_2, True),
    ("keywords:letter_frequency", {"letter": "p", "let_frequency": 4, "let_relation": AL}, LETTER_FREQUENCY_2, False),
    ("change_case:english_capital", {}, ENGLISH_CAPITAL_1, True),
    ("change_case:english_capital", {}, ENGLISH_CAPITAL_2, False),
    ("change_case:english_lowercase", {}, ENGLISH_LOWERCASE_1, True),
    ("change_case:english_lowercase", {}, ENGLISH_LOWERCASE_2, False),
    ("punctuation:no_comma", {}, COMMA_1, True),
    ("punctuation:no_comma", {}, COMMA_2, False),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 3, "capital_relation": AL},
        CAPITAL_WORDS_1,
        True,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 5, "capital_relation": LT},
        CAPITAL_WORDS_2,
        True,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 4, "capital_relation": LT},
        CAPITAL_WORDS_2,
        False,
    ),
    ("startend:quotation", {}, QUOTATION_1, True),
    ("startend:quotation", {}, QUOTATION_2, False),
]

# Cases of ours: ids the reference does not test, and edges of the semantics above.
OUR_CASES = [
    ("detectable_format:json_format", {}, '{"a": 1, "b": [1, 2]}', True),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, '```JSON\n[1, 2, 3]\n```  ', True),
    ("detectable_format:json_format", {}, 'Here it is: {"a": 1}', False),
    ("detectable_format:json_format", {}, "{'a': 1}", False),
    ("detectable_format:json_format", {}, "[" * 100000, False),
    ("language:response_language", {"language": "fr"}, "The response is English, as anyone can see.", False),
    ("language:response_language", {"language": "de"}, "Heute gehen wir in den Park und essen ein Eis.", True),
    ("language:response_language", {"language": "en"}, "12345 !!! ...", True),  # no letters: passes
    ("change_case:english_capital", {}, "DIES IST EIN DEUTSCHER SATZ ÜBER DAS WETTER IN BERLIN.", False),
    ("change_case:english_lowercase", {}, "ceci est une phrase en français, pas en anglais du tout.", False),
    ("change_case:english_lowercase", {}, "this is english but it has one Capital.", False),
    ("keywords:existence", {"keywords": ["C++"]}, "I write C++ every day.", True),  # literal, not a regex
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LT}, "cat catalog", False),
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "a catalog of dogs", True),  # whole words only
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "one\n***\n\n***\ntwo", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 1}, "just one paragraph", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Day", "num_sections": 2}, "Day 1 run\nDay 2 rest", True),
    ("combination:two_responses", {}, "A\n******\nB\n******\n", True),
    ("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"}, '"Bye. Is there anything else I can help with?"', True),
    ("startend:quotation", {}, '"', False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "ps: no dots here", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "P.P.S. later", True),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AL}, "Dr. Smith came. He left.", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LT}, "Dr. Smith came. He left.", True),
]  # fmt: skip


def _case_id(case):
    return case[0].split(":")[1]


@pytest.mark.parametrize("case", REFERENCE_CASES + OUR_CASES, ids=_case_id)
def test_verdict(case):
    instruction_id, kwargs, response, expected = case
    assert follows(response, instruction_id, kwargs) is expected


def test_reference_cases_cover_every_id_it_tests():
    tested = {case[0] for case in REFERENCE_CASES}
    assert tested == set(INSTRUCTION_IDS) - {"detectable_format:json_format"}
    assert {case[0] for case in OUR_CASES} >= {"detectable_format:json_format"}


# --- the reference's counting utilities (instructions_util_test.py) ---


@pytest.mark.parametrize(
    "text, words",
    [
        ("word1, word2, word3, word4.", 4),
        (
            """
      Bard can you tell me which is the best optimization method for the
      transition from an hydro-thermal system to an hydro-renewables system""",
            24,
        ),
        (
            """
      Hyphenated-word has two word counts.
      """,
            6,
        ),
    ],
)
def test_count_words_as_the_reference(text, words):
    assert count_words(text) == words


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("xx,x. xx,x! xx/x. x{x}x? x.", 5),
        ("xx,x! xxxx. x(x)x?", 3),
        ("xxxx. xx,x! xx|x. x&x x?", 4),
        ("xx-x]xx,x! x{x}xx,x.", 2),
        ("", 0),
        ("   \n ", 0),
        ("no punctuation at all", 1),
        ("Mr. and Mrs. Brown live on Main St. in Springfield. They have two kids.", 2),
        ("The meeting is at 10 a.m. tomorrow. Please be on time.", 2),
        ("Python 3.11 was released in Oct. 2022. It is faster than 3.10.", 2),
        ("Wait... what did you say? I didn't hear you!", 2),
        ('"Hello," she said. "How are you?" He didn\'t answer.', 3),
        ("Sure! Here are tips:\n\n1. Drink water.\n2. Sleep.", 5),
        ("J. K. Rowling wrote Harry Potter. It was a hit.", 2),
    ],
)
def test_count_sentences(text, sentences):
    assert count_sentences(text) == sentences


# --- strict vs loose ---


def test_loose_passes_what_strict_fails_after_a_preamble():
    response = 'Sure, here it is:\n"Roses are red, violets are blue."'
    assert verify(response, ["startend:quotation"], [{}]) == ([False], [True])


def test_loose_removes_asterisks_and_last_line():
    response = "**Paris** is nice.\nAny other questions?\n(Note: written by me.)"
    strict, loose = verify(
        response,
        ["startend:end_checker", "detectable_format:number_highlighted_sections"],
        [{"end_phrase": "Any other questions?"}, {"num_highlights": 1}],
    )
    assert strict == [False, True]
    assert loose == [True, True]


def test_loose_variants_in_the_reference_order():
    assert loose_variants("a*\nb*\nc*") == ["a*\nb*\nc*", "a\nb\nc", "b*\nc*", "a*\nb*", "b*", "b\nc", "a\nb", "b"]


def test_loose_fails_when_no_variant_passes():
    assert verify("no quotes\nhere", ["startend:quotation"], [{}]) == ([False], [False])


@pytest.mark.parametrize("response", ["", "   ", "\n\n"])
@pytest.mark.parametrize("instruction_id", ["punctuation:no_comma", "keywords:forbidden_words", "startend:quotation"])
def test_empty_response_follows_nothing(response, instruction_id):
    kwargs = {"forbidden_words": ["x"]} if instruction_id == "keywords:forbidden_words" else {}
    assert follows(response, instruction_id, kwargs) is False
    assert verify(response, [instruction_id], [kwargs]) == ([False], [False])


def test_verify_lists_one_verdict_per_instruction():
    ids = ["punctuation:no_comma", "length_constraints:number_words", "combination:repeat_prompt"]
    kwargs = [{}, {"num_words": 3, "relation": LT}, {"prompt_to_repeat": "Say hi."}]
    assert verify("Say hi. Hi there", ids, kwargs) == ([True, False, True], [True, False, True])
    with pytest.raises(ValueError, match="2 instruction ids but 1 kwargs"):
        verify("x", ids[:2], kwargs[:1])


def test_repeat_prompt_falls_back_to_the_prompt():
    assert follows("Tell a joke. Why did...", "combination:repeat_prompt", {}, prompt="Tell a joke.")
    assert not follows("A joke.", "combination:repeat_prompt", {"prompt_to_repeat": None}, prompt="Tell a joke.")


# --- kwargs ---


def test_kwargs_table_names_every_id_in_registry_order():
    assert len(INSTRUCTION_IDS) == 25 == len(set(INSTRUCTION_IDS))
    assert tuple(KWARGS) == INSTRUCTION_IDS
    assert INSTRUCTION_IDS[0] == "keywords:existence" and INSTRUCTION_IDS[-1] == "startend:quotation"
    assert KWARGS["keywords:letter_frequency"] == {"letter": str, "let_frequency": int, "let_relation": str}
    assert KWARGS["detectable_format:title"] == {}


def test_check_kwargs_drops_nones_and_cleans():
    hf_row = {k: None for k in ("num_words", "keyword", "letter", "language", "end_phrase")}
    assert check_kwargs("punctuation:no_comma", hf_row) == {}
    assert check_kwargs("punctuation:no_comma", None) == {}
    assert check_kwargs("keywords:letter_frequency", {"letter": "T", "let_frequency": 4.0, "let_relation": AL}) == {
        "letter": "t",
        "let_frequency": 4,
        "let_relation": AL,
    }
    assert check_kwargs("startend:end_checker", {"end_phrase": " Bye. "}) == {"end_phrase": "Bye."}


@pytest.mark.parametrize(
    "instruction_id, kwargs, message",
    [
        ("keywords:nope", {}, "unknown instruction id 'keywords:nope'"),
        ("length_constraints:number_words", {"num_words": 5}, "missing kwarg.*relation"),
        ("punctuation:no_comma", {"num_words": 5}, "unexpected kwarg.*num_words"),
        ("length_constraints:number_words", {"num_words": 5, "relation": "at most"}, "must be one of"),
        ("length_constraints:number_words", {"num_words": "5", "relation": AL}, "must be an integer"),
        ("length_constraints:number_words", {"num_words": True, "relation": AL}, "must be an integer"),
        ("length_constraints:number_words", {"num_words": -1, "relation": AL}, "must not be negative"),
        ("language:response_language", {"language": "xx"}, "unknown language code 'xx'"),
        ("keywords:existence", {"keywords": "cat"}, "non-empty list of strings"),
        ("keywords:existence", {"keywords": []}, "non-empty list of strings"),
        ("keywords:existence", {"keywords": ["cat", ""]}, "non-empty strings"),
        ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 1, "let_relation": AL}, "one letter"),
        ("startend:end_checker", {"end_phrase": "  "}, "non-empty string"),
        (
            "length_constraints:nth_paragraph_first_word",
            {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "so"},
            "nth_paragraph must be between 1 and num_paragraphs",
        ),
    ],
)
def test_check_kwargs_rejects(instruction_id, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        check_kwargs(instruction_id, kwargs)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError):
        follows("some response", instruction_id, kwargs)


def test_kind():
    assert kind("change_case:english_capital") == "change_case"
    assert {kind(i) for i in INSTRUCTION_IDS} == {
        "keywords",
        "language",
        "length_constraints",
        "detectable_content",
        "detectable_format",
        "combination",
        "startend",
        "change_case",
        "punctuation",
    }
    with pytest.raises(ValueError, match="unknown instruction id"):
        kind("nope")


# --- conflicts ---


def test_conflicts_are_symmetric_and_reflexive():
    assert set(CONFLICTS) == set(INSTRUCTION_IDS)
    for a, others in CONFLICTS.items():
        assert a in others
        for b in others:
            assert a in CONFLICTS[b], (a, b)


def test_conflict_table_facts():
    assert CONFLICTS["detectable_format:constrained_response"] == frozenset(INSTRUCTION_IDS)
    assert "keywords:existence" not in CONFLICTS["detectable_format:json_format"]
    assert "detectable_format:title" in CONFLICTS["detectable_format:json_format"]
    assert "length_constraints:number_paragraphs" in CONFLICTS["length_constraints:number_sentences"]
    assert "startend:quotation" in CONFLICTS["detectable_format:title"]
    assert "punctuation:no_comma" not in CONFLICTS["combination:repeat_prompt"]
    assert "language:response_language" not in CONFLICTS["combination:two_responses"]
    assert CONFLICTS["keywords:letter_frequency"] == {
        "keywords:letter_frequency",
        "detectable_format:constrained_response",
        "detectable_format:json_format",
        "combination:two_responses",
        "combination:repeat_prompt",
    }


def test_conflicting_pairs():
    assert conflicting(["punctuation:no_comma", "detectable_format:title"]) == []
    assert conflicting(["language:response_language", "keywords:existence", "change_case:english_capital"]) == [
        ("language:response_language", "keywords:existence"),
        ("language:response_language", "change_case:english_capital"),
    ]
    assert conflicting(["punctuation:no_comma", "punctuation:no_comma"]) == [
        ("punctuation:no_comma", "punctuation:no_comma")
    ]
    with pytest.raises(ValueError, match="unknown instruction id"):
        conflicting(["nope"])


def test_language_detection_is_deterministic_and_cached():
    text = "Ciao, come stai? Oggi fa bel tempo a Roma."
    verdicts = {follows(text, "language:response_language", {"language": "it"}) for _ in range(3)}
    assert verdicts == {True}
    assert ifv.text._detect_language.cache_info().hits >= 2


# --- sentence counting against the reference's pretrained Punkt model ---
# Plausible responses (written for this test, not used to tune the rules) and the sentence count that
# NLTK's pretrained Punkt English model (the reference's counter) gives each, measured once offline.
# Ours agrees on all but one; that row records both counts.
PUNKT_COUNTED = [
    (
        "Sure, here is a short essay about the history of the internet.\n\nThe internet began as a research project in the late 1960s. Known as ARPANET, it connected a handful of universities in the U.S. Over the next two decades, new protocols such as TCP/IP made it possible for different networks to talk to each other.\n\nIn 1991, Tim Berners-Lee introduced the World Wide Web. Suddenly, anyone with a browser could visit pages, follow links and share information. By the late 1990s, millions of people were online.\n\nToday, the internet is part of daily life. We use it to work, learn, shop and stay in touch with friends. Its future is hard to predict, but one thing is certain: it will keep changing.",
        9,
    ),
    (
        "<<The Lonely Lighthouse>>\n\nOn a rocky island far from shore stood an old lighthouse. Its keeper, Mr. Jenkins, had lived there for forty years. Every night he climbed the 120 steps to light the lamp.\n\nOne stormy evening, a small boat appeared on the horizon. Was it lost? Mr. Jenkins grabbed his lantern and waved it high. The boat turned toward the light and reached the harbor safely.\n\nP.S. Lighthouses are still used today, although most are automated.",
        9,
    ),
    (
        "Here are 5 tips for better sleep:\n\n* Go to bed at the same time every night.\n* Avoid caffeine after 2 p.m.\n* Keep your bedroom cool and dark.\n* Limit screen time before bed.\n* Exercise regularly, but not too late in the day.\n\nFollowing these tips can improve both the quality and the length of your sleep.",
        5,
    ),
    (
        "SECTION 1\nThe Roman Empire was one of the largest empires in history. It lasted for centuries and shaped Western civilization.\n\nSECTION 2\nIts legacy includes law, language, architecture and roads. Many European languages, e.g. Spanish and Italian, come from Latin.",
        5,
    ),
    ('```json\n{\n  "name": "Alice",\n  "age": 30,\n  "skills": ["Python", "SQL"]\n}\n```', 1),
    (
        "My answer is no. While the idea sounds appealing, there are several problems. First, the cost is too high. Second, the timeline is unrealistic. Finally, the team lacks experience.",
        5,
    ),
    (
        '"The best way to predict the future is to create it." This quote, often attributed to Peter Drucker, reminds us that we are not passive observers. We shape what comes next through our choices!',
        3,
    ),
    (
        "Dear Hiring Manager,\n\nI am writing to apply for the position of Data Analyst at Acme Corp. With three years of experience in SQL, Python and Tableau, I believe I would be a great fit for your team.\n\nIn my current role at Beta Inc., I built dashboards that helped reduce costs by 15%. I also led a project to automate weekly reports, saving the team about 10 hrs. per week.\n\nThank you for considering my application. I look forward to hearing from you.\n\nSincerely,\nJane Doe",
        7,
    ),
    (
        "what a lovely day it is. the sun is shining and the birds are singing. i think i will go for a walk in the park. maybe i will see some friends there!",
        4,
    ),
    (
        "WHY IS THE SKY BLUE? THE ANSWER IS RAYLEIGH SCATTERING. SUNLIGHT IS MADE OF MANY COLORS, AND BLUE LIGHT IS SCATTERED MORE THAN RED LIGHT BY THE GASES IN THE AIR. THAT IS WHY WE SEE A BLUE SKY DURING THE DAY.",
        4,
    ),
    (
        "Limerick:\nThere once was a cat from Peru\nWho dreamed he was eating a shoe\nHe woke with a fright\nIn the middle of the night\nAnd found that his dream had come true",
        1,
    ),
    (
        "Response 1: Paris is the capital of France. It is known for the Eiffel Tower.\n******\nResponse 2: The capital of France is Paris, a city famous for art, food and fashion.",
        3,
    ),
    (
        "The mitochondria is the powerhouse of the cell. It produces ATP through cellular respiration. This process requires oxygen... and glucose. Without mitochondria, cells would not have enough energy to function.",
        4,
    ),
    (
        "To make a cup of tea:\n1. Boil water.\n2. Put a tea bag in a cup.\n3. Pour the hot water over the tea bag.\n4. Wait 3-5 min.\n5. Remove the tea bag and enjoy.",
        10,
    ),
    (
        'In 1969, Neil Armstrong became the first person to walk on the Moon. He famously said, "That\'s one small step for man, one giant leap for mankind." The Apollo 11 mission was a triumph of science and engineering. It inspired generations of scientists and engineers around the world.',
        4,
    ),
    (
        'I\'m not sure I understand the question. Could you clarify what you mean by "optimal"? Are you asking about speed, cost or quality? Once I know, I can give you a better answer.',
        4,
    ),
    (
        "Climate change is one of the biggest challenges of our time. Rising temperatures, melting ice caps and extreme weather events are already affecting millions of people. Scientists agree that human activities, esp. the burning of fossil fuels, are the main cause. To reduce emissions, countries must invest in renewable energy, improve energy efficiency and protect forests. Individuals can help too, e.g. by using public transport, eating less meat and saving energy at home.",
        7,
    ),
    (
        "*Introduction*\nThe purpose of this report is to analyze sales data from Q1 2023.\n\n*Findings*\nSales increased by 12% compared to Q4 2022. The growth was driven by strong demand in Europe and Asia.\n\n*Conclusion*\nThe company is on track to meet its annual targets.",
        4,
    ),
    (
        "Okay, here's a riddle for you: What has keys but can't open locks? The answer is a piano! Did you get it right?",
        3,
    ),
    (
        "The Great Wall of China is over 13,000 miles long. Construction began in the 7th century B.C. and continued for centuries. It was built to protect Chinese states from invasions. Today it is a UNESCO World Heritage site and attracts millions of visitors every year.",
        5,
    ),
    (
        "Title: A Day at the Beach\n\nThe waves crashed against the shore as the children built sandcastles. Their parents relaxed under colorful umbrellas, reading books and sipping lemonade. Later, everyone gathered for a picnic of sandwiches, fruit and cookies. As the sun set, the sky turned orange and pink. It was a perfect day.",
        5,
    ),
    (
        "Here is my answer:\n\n- Pros: cheap, fast, easy to use\n- Cons: limited features, no support\n\nOverall, I would recommend it for beginners. Advanced users may want something else.",
        2,
    ),
    (
        "According to the World Health Organization (WHO), adults should get at least 150 minutes of moderate exercise per week. That's about 30 min. a day, five days a week. Walking, cycling and swimming are all good options.",
        4,
    ),
    (
        "The recipe calls for 2 tbsp. of butter, 1 cup of sugar and 3 eggs. Mix them together. Then add 2 cups of flour and bake at 350 F for 25 minutes. Let it cool before serving!",
        5,
    ),
    (
        "It was a dark and stormy night; the rain fell in torrents — except at occasional intervals, when it was checked by a violent gust of wind. The lamps struggled against the darkness. Nobody dared to go outside.",
        3,
    ),
]
PUNKT_DISAGREES = {7: 8}  # row: our count


@pytest.mark.parametrize("row", range(len(PUNKT_COUNTED)))
def test_sentence_count_agrees_with_punkt(row):
    text, punkt = PUNKT_COUNTED[row]
    assert count_sentences(text) == PUNKT_DISAGREES.get(row, punkt)


def test_sentence_count_agreement_rate():
    assert len(PUNKT_COUNTED) == 25 and len(PUNKT_DISAGREES) == 1


LANGUAGE_SAMPLES = [
    "Bonjour tout le monde, comment ça va aujourd'hui ?",
    "HOLA AMIGO, ¿QUÉ TAL?",
    "Привет, как дела? Сегодня хорошая погода.",
    "你好，世界。今天天气很好。",
    "こんにちは世界、今日はいい天気ですね。",
    "안녕하세요, 오늘 날씨가 좋네요.",
    "مرحبا بالعالم، الطقس جميل اليوم",
    "Xin chào thế giới, hôm nay trời đẹp.",
    "Γειά σου κόσμε, τι κάνεις;",
    "שלום עולם, מה שלומך?",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "Hallo Welt, wie geht es dir heute?",
    "Ciao mondo, come stai oggi? Tutto bene.",
    "Olá mundo, como você está hoje?",
    "the QUICK brown FOX jumps over THE lazy dog",
    "e-mail me at a.b@example.com or see https://example.org/page?x=1 today",
    "**Bold** and *italic* words, `code`, [links](http://x.y) and 1, 2, 3.",
    "123 456 !!!",
    "",
]


def test_the_fast_language_detector_gives_langdetects_verdict_on_every_text():
    """langid runs langdetect's own algorithm faster: the verdicts must be the same, text for text
    (the set's messages in English and the samples above in 15 languages and scripts)."""
    import json

    import langdetect
    from langdetect.detector_factory import DetectorFactory, init_factory

    from parrot.evaluate.instructions import langid
    from parrot.evaluate.verified import verified_mt_path

    DetectorFactory.seed = 0
    init_factory()
    from langdetect import detector_factory

    def reference(text):
        detector = detector_factory._factory.create()
        detector.append(text)
        try:
            return detector.detect()
        except langdetect.LangDetectException:
            return None

    lines = verified_mt_path().read_text(encoding="utf-8").splitlines()
    texts = LANGUAGE_SAMPLES + [t for line in lines[:40] for t in json.loads(line)["turns"]]
    assert [langid.detect(t) for t in texts] == [reference(t) for t in texts]
    assert {langid.detect(t) for t in LANGUAGE_SAMPLES} >= {"fr", "ru", "ko", "ar", "vi", "el", "he", "hi", "de", "en"}
