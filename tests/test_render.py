"""Render-and-mask with the real SmolLM2 tokenizer and chat template (no generation markers)."""

import copy

import pytest

from parrot import ParrotError
from parrot.synthesize.roleswap import STOP_MARKER, simulator_prompt, to_simulator
from parrot.train.render import IGNORE, render_chat, render_examples

CHAT = [
    {"role": "user", "content": "Name a prime number."},
    {"role": "assistant", "content": "7 is prime."},
    {"role": "user", "content": "And a larger one?"},
    {"role": "assistant", "content": "101 is prime too."},
]


def trained_runs(tok, rendered):
    """The decoded text of each contiguous run of trainable tokens."""
    runs, cur = [], []
    for t, label in zip(rendered.input_ids, rendered.labels):
        if label != IGNORE:
            assert label == t
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return [tok.decode(r) for r in runs]


def test_trainable_tokens_are_assistant_content_plus_end_of_turn(smollm2_tokenizer):
    r = render_chat(smollm2_tokenizer, CHAT)
    assert trained_runs(smollm2_tokenizer, r) == ["7 is prime.<|im_end|>", "101 is prime too.<|im_end|>"]
    assert r.trainable_tokens == sum(
        len(smollm2_tokenizer(m["content"] + "<|im_end|>")["input_ids"]) for m in CHAT if m["role"] == "assistant"
    )
    assert r.drop is None and r.messages_kept == 4


def test_ids_are_the_templates_own_tokenization(smollm2_tokenizer):
    r = render_chat(smollm2_tokenizer, CHAT)
    full = smollm2_tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert r.input_ids == smollm2_tokenizer(full, add_special_tokens=False)["input_ids"]
    assert smollm2_tokenizer.decode(r.input_ids[-1:]) == "\n"  # template glue, untrained
    assert r.labels[-1] == IGNORE


def test_history_with_generation_prompt_is_a_prefix_of_the_full_rendering(smollm2_tokenizer):
    r = render_chat(smollm2_tokenizer, CHAT)
    for k in (1, 3):
        prompt = smollm2_tokenizer.apply_chat_template(CHAT[:k], tokenize=False, add_generation_prompt=True)
        ids = smollm2_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert r.input_ids[: len(ids)] == ids
        before = smollm2_tokenizer.apply_chat_template(CHAT[:k], tokenize=False)
        n = len(smollm2_tokenizer(before, add_special_tokens=False)["input_ids"])
        assert all(label == IGNORE for label in r.labels[n : len(ids)])  # role header not trained
        assert r.labels[len(ids)] != IGNORE  # the answer starts right after


def test_simulator_view_trains_user_questions_and_the_stop_marker(smollm2_tokenizer):
    r = render_chat(smollm2_tokenizer, to_simulator(CHAT, add_stop=True))
    assert trained_runs(smollm2_tokenizer, r) == [
        "Name a prime number.<|im_end|>",
        "And a larger one?<|im_end|>",
        f"{STOP_MARKER}<|im_end|>",
    ]
    # what a backend sees at inference is exactly a prefix of the training sequence
    prompt = smollm2_tokenizer.apply_chat_template(
        simulator_prompt(CHAT[:2]), tokenize=False, add_generation_prompt=True
    )
    ids = smollm2_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert r.input_ids[: len(ids)] == ids


def test_system_message_is_never_trained(smollm2_tokenizer):
    chat = [{"role": "system", "content": "Answer tersely."}] + CHAT
    r = render_chat(smollm2_tokenizer, chat)
    assert trained_runs(smollm2_tokenizer, r) == ["7 is prime.<|im_end|>", "101 is prime too.<|im_end|>"]
    assert "Answer tersely." in smollm2_tokenizer.decode(r.input_ids)


def test_single_turn(smollm2_tokenizer):
    r = render_chat(smollm2_tokenizer, CHAT[:2])
    assert trained_runs(smollm2_tokenizer, r) == ["7 is prime.<|im_end|>"]


def test_a_chat_that_fits_is_one_example(smollm2_tokenizer):
    full = render_chat(smollm2_tokenizer, CHAT)
    [r] = render_examples(smollm2_tokenizer, CHAT, max_length=len(full.input_ids))
    assert r.input_ids == full.input_ids and r.labels == full.labels


def test_one_token_too_long_splits_at_the_turn_boundary_with_the_first_turn_as_history(smollm2_tokenizer):
    full = render_chat(smollm2_tokenizer, CHAT)
    counts = {}
    first, second = render_examples(smollm2_tokenizer, CHAT, max_length=len(full.input_ids) - 1, counts=counts)
    assert first.input_ids == render_chat(smollm2_tokenizer, CHAT[:2]).input_ids
    assert trained_runs(smollm2_tokenizer, first) == ["7 is prime.<|im_end|>"]
    assert trained_runs(smollm2_tokenizer, second) == ["101 is prime too.<|im_end|>"]  # trained once
    assert counts == {"sessions_shortened": 1, "turns_dropped": 1}


def test_history_marked_as_context_is_not_trained(smollm2_tokenizer):
    r = render_chat(smollm2_tokenizer, CHAT, context=2)
    assert trained_runs(smollm2_tokenizer, r) == ["101 is prime too.<|im_end|>"]
    assert r.input_ids == render_chat(smollm2_tokenizer, CHAT).input_ids


def test_trailing_question_without_answer_is_left_out(smollm2_tokenizer):
    r = render_chat(smollm2_tokenizer, CHAT[:3])
    assert r.input_ids == render_chat(smollm2_tokenizer, CHAT[:2]).input_ids


def test_chat_with_no_target_turn_is_dropped(smollm2_tokenizer):
    assert render_chat(smollm2_tokenizer, CHAT[:1]).drop == "no_target"


def test_another_template_without_generation_markers(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)
    # a different layout and end-of-turn token; no {% generation %} anywhere
    tok.chat_template = (
        "{{ '<|endoftext|>' }}{% for m in messages %}{{ '### ' + m['role'] | capitalize + ':\n' + m['content'] "
        "+ '<|endoftext|>\n\n' }}{% endfor %}{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
    )
    r = render_chat(tok, CHAT)
    assert trained_runs(tok, r) == ["7 is prime.<|endoftext|>", "101 is prime too.<|endoftext|>"]


def test_template_that_breaks_the_prefix_property_is_an_error(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)
    # marks the last message differently, so a prefix renders differently from the full chat
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
        "{% if loop.last %}{{ ' [last]' }}{% endif %}{{ '<|im_end|>' }}{% endfor %}"
    )
    with pytest.raises(ParrotError, match="prefix"):
        render_chat(tok, CHAT)
