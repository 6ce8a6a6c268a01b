"""Judge prompt rendering (compared with FastChat's own functions) and the rating parse."""

import pytest
from eval_helpers import TRICKY, fastchat_messages, import_fastchat_common

from parrot.evaluate.bench import load_bench
from parrot.evaluate.judge import all_prompts
from parrot.evaluate.judge_prompts import judge_messages, nturn_prompts, parse_rating, prompt_name, render_judge_prompt


@pytest.fixture(scope="module")
def fastchat():
    return import_fastchat_common()


@pytest.mark.parametrize(
    "category, turn, expected",
    [
        ("writing", 1, "single-v1"),
        ("writing", 2, "single-v1-multi-turn"),
        ("math", 1, "single-math-v1"),
        ("coding", 2, "single-math-v1-multi-turn"),
    ],
)
def test_every_fastchat_prompt_kind_renders_byte_for_byte_as_fastchat(fastchat, category, turn, expected):
    question = {"question_id": 1, "category": category, "turns": ["Q1 " + TRICKY, "Q2 {answer}"]}
    answers = ["A1 " + TRICKY, "A2 }{"]
    refs = ["R1 {ref_answer_2}", "R2 " + TRICKY]
    fc_name, fc_user, fc_messages = fastchat_messages(fastchat, question, answers, turn, refs)
    name, system, user = render_judge_prompt(all_prompts(None), question, answers, turn, refs)
    assert (name, user) == (fc_name, fc_user) and name == expected
    assert judge_messages(system, user) == fc_messages
    assert fc_messages[0]["role"] == "system"  # the judge prompt's own system prompt is sent


def test_real_mt_bench_turns_render_as_fastchat(fastchat):
    bench = load_bench("mt-bench")
    for q in bench.select(question_ids=["81", "101", "111", "125", "131"]).questions:
        refs = [bench.reference(q["question_id"], k) for k in (1, 2)]
        answers = [f"answer one to {q['question_id']}", f"answer two to {q['question_id']}"]
        for turn in (1, 2):
            _, fc_user, fc_messages = fastchat_messages(fastchat, q, answers, turn, refs)
            _, system, user = render_judge_prompt(all_prompts(None), q, answers, turn, refs)
            assert judge_messages(system, user) == fc_messages


def test_prompt_choice_by_turn_category_and_reference():
    assert prompt_name("writing", 1, 8, False) == "single-v1"
    assert prompt_name("math", 1, 8, True) == "single-math-v1"
    assert prompt_name("writing", 2, 8, False) == "parrot-nturn-v1"
    assert prompt_name("math", 2, 8, True) == "parrot-nturn-math-v1"
    assert prompt_name("math", 5, 8, False) == "parrot-nturn-v1"  # no reference for that turn
    assert prompt_name("stem", 2, 2, True) == "single-v1-multi-turn"  # stem never uses references


def test_nturn_prompt_shows_the_conversation_up_to_turn_k_and_grades_the_kth_answer():
    q = {"question_id": 1, "category": "writing", "turns": [f"question {i} {{x}}" for i in range(1, 9)]}
    answers = [f"answer {i}" for i in range(1, 9)]
    name, system, user = render_judge_prompt(all_prompts(None), q, answers, 5, None)
    assert name == "parrot-nturn-v1"
    for i in range(1, 6):
        assert f"### User:\nquestion {i} {{x}}\n\n### Assistant A:\nanswer {i}" in user
    assert "question 6" not in user and "answer 6" not in user
    assert user.index("answer 4") < user.index("question 5") < user.rindex("answer 5")
    assert "user question 5" in system and "[[rating]]" in system
    assert user.endswith("answer 5\n\n<|The End of Assistant A's Conversation with User|>")


def test_nturn_reference_variant_carries_the_reference_of_turn_k():
    q = {"question_id": 1, "category": "math", "turns": ["2+2?", "and times 3?", "minus one?"]}
    name, system, user = render_judge_prompt(all_prompts(None), q, ["4", "12", "11"], 3, [None, None, "11"])
    assert name == "parrot-nturn-math-v1"
    assert "<|The Start of Reference Answer to User Question 3|>\n\n11\n\n<|The End of Reference Answer|>" in user
    assert "### User:\nminus one?\n\n### Assistant A:\n11" in user


def test_nturn_prompts_keep_the_rating_format():
    for p in nturn_prompts().values():
        assert p.output_format == "[[rating]]" and '"[[rating]]"' in p.system


@pytest.mark.parametrize(
    "text, score",
    [
        ("Good answer. Rating: [[8]]", 8),
        ("Rating: [[7.5]]", 7.5),
        ("I'd say [9] overall", 9),  # FastChat's [rating] fallback
        ("first [[3]] then [[9]]", 3),  # first match wins
        ("[2] mentions a footnote, then Rating: [[6]]", 6),  # [[x]] is looked for before [x]
        ("Rating: 7", -1),
        ("[[seven]]", -1),
        ("", -1),
        (None, -1),
        ("[[ 5 ]]", -1),
        ("\u00a0garbage {[[[]]]}", -1),
    ],
)
def test_rating_parse_matches_fastchat_including_junk(fastchat, text, score):
    assert parse_rating(text) == score
    if text is not None:
        judge = fastchat.Judge("gpt-4", {"output_format": "[[rating]]"})
        assert fastchat.process_judgement(text, judge)[0] == score
