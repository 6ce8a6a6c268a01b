"""The simulator's role swap: training view, inference view, stop marker, topics."""

import pytest

from parrot import ParrotError
from parrot.synthesize.roleswap import (
    STOP_MARKER,
    is_stop,
    load_ask_system_prompt,
    opening_turn,
    simulator_prompt,
    to_simulator,
)

DIALOGUE = [
    {"role": "user", "content": "What is a monad?"},
    {"role": "assistant", "content": "A monad is a design pattern..."},
    {"role": "user", "content": "Show me one in Python."},
    {"role": "assistant", "content": "Here is a Maybe monad..."},
]


def roles(messages):
    return [m["role"] for m in messages]


def test_training_view_swaps_user_and_assistant_after_system_and_opening():
    out = to_simulator(DIALOGUE)
    assert roles(out) == ["system", "user", "assistant", "user", "assistant", "user"]
    assert out[0]["content"] == load_ask_system_prompt()
    assert out[1]["content"] == opening_turn()
    assert [m["content"] for m in out[2:]] == [m["content"] for m in DIALOGUE]


def test_training_view_with_stop_ends_with_the_stop_marker_after_the_last_answer():
    out = to_simulator(DIALOGUE, add_stop=True)
    assert roles(out)[-2:] == ["user", "assistant"]
    assert out[-2]["content"] == DIALOGUE[-1]["content"]  # the real last answer, as a user turn
    assert out[-1]["content"] == STOP_MARKER
    assert is_stop(out[-1]["content"])


def test_stop_is_not_added_after_an_unanswered_question():
    out = to_simulator(DIALOGUE[:3], add_stop=True)
    assert roles(out)[-1] == "assistant"
    assert out[-1]["content"] == DIALOGUE[2]["content"]
    assert not any(is_stop(m["content"]) for m in out[1:])  # the system prompt names the marker


def test_original_system_message_is_dropped():
    out = to_simulator([{"role": "system", "content": "You are a pirate."}] + DIALOGUE)
    assert all("pirate" not in m["content"] for m in out)
    assert out == to_simulator(DIALOGUE)


def test_custom_system_prompt_replaces_the_packaged_one():
    out = to_simulator(DIALOGUE, system_prompt="Be a curious student.")
    assert out[0] == {"role": "system", "content": "Be a curious student."}


def test_input_messages_are_not_modified():
    msgs = [dict(m) for m in DIALOGUE]
    to_simulator(msgs, add_stop=True)
    assert msgs == DIALOGUE


def test_inference_view_of_an_empty_history_asks_for_the_first_question():
    out = simulator_prompt([])
    assert roles(out) == ["system", "user"]
    # the training view's first question follows exactly this prefix
    assert to_simulator(DIALOGUE)[:2] == out


def test_inference_view_is_the_training_view_up_to_the_next_question():
    history = DIALOGUE[:2]
    prompt = simulator_prompt(history)
    full = to_simulator(DIALOGUE)
    assert full[: len(prompt)] == prompt
    assert full[len(prompt)] == {"role": "assistant", "content": DIALOGUE[2]["content"]}
    assert roles(prompt)[-1] == "user"


def test_inference_view_rejects_a_history_ending_with_a_question():
    with pytest.raises(ParrotError, match="assistant"):
        simulator_prompt(DIALOGUE[:1])


def test_topic_goes_into_the_opening_turn_in_both_views():
    prompt = simulator_prompt([], topic="sourdough baking")
    assert "sourdough baking" in prompt[1]["content"]
    assert to_simulator(DIALOGUE, topic="sourdough baking")[:2] == prompt
    assert "sourdough" not in simulator_prompt([])[1]["content"]


def test_system_prompt_names_the_stop_marker():
    assert STOP_MARKER in load_ask_system_prompt()
    assert "{stop_marker}" not in load_ask_system_prompt()


@pytest.mark.parametrize(
    "text,expected",
    [
        (STOP_MARKER, True),
        (f"  {STOP_MARKER}\n", True),
        (f"Thanks, that is all. {STOP_MARKER}", True),
        ("Can you explain the end_of_session idea?", False),
        ("", False),
    ],
)
def test_is_stop(text, expected):
    assert is_stop(text) is expected


def test_roles_must_alternate():
    with pytest.raises(ParrotError, match="alternate"):
        to_simulator([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
