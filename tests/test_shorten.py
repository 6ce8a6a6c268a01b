"""The one rule for long conversations (parrot.core.shorten), and how training uses it: a 10-turn
session of ~200-token messages (~4,000 tokens) at max_length 512, rendered with the real SmolLM2
tokenizer, in train-chat's view, train-ask's role-swapped view, and as DPO pairs."""

import random

import pytest

from parrot.core.shorten import shorten, split_turns
from parrot.core.tokens import count_tokens
from parrot.synthesize.roleswap import STOP_MARKER, to_simulator
from parrot.train.dpo import fit_pair
from parrot.train.render import IGNORE, render_chat, render_examples

FILLER = "The river runs past the old mill and the town keeps its records in the hall. "  # 18 tokens


def msg(role, text):
    return {"role": role, "content": text}


def chars_fit(limit):
    return lambda msgs: sum(len(m["content"]) for m in msgs) <= limit


def small_chat():
    return [
        msg("system", "S" * 10),
        msg("user", "u1" * 10),
        msg("assistant", "a1" * 10),
        msg("user", "u2" * 10),
        msg("assistant", "a2" * 10),
        msg("user", "u3" * 10),
    ]


# ----------------------------------------------------------------- the rule itself


def test_a_conversation_that_fits_is_returned_untouched():
    chat = small_chat()
    kept, how = shorten(chat, chars_fit(1000))
    assert kept is chat and not how


def test_oldest_whole_turns_go_first_and_the_system_message_stays():
    kept, how = shorten(small_chat(), chars_fit(10 + 40 + 20))
    assert [m["content"][:2] for m in kept] == ["SS", "u2", "a2", "u3"]
    assert how.turns_dropped == 1 and how.chars_cut == 0


def test_kept_turns_are_never_dropped():
    kept, how = shorten(small_chat(), chars_fit(10 + 40 + 20), keep=2)
    assert [m["content"][:2] for m in kept] == ["SS", "u2", "a2", "u3"]
    with_three = shorten(small_chat(), chars_fit(10 + 80 + 20), keep=3)[0]
    assert with_three == small_chat()[:1] + small_chat()[1:]


def test_a_turn_alone_over_the_budget_has_its_first_message_cut_keeping_its_end():
    chat = [msg("user", "word " * 50 + "so what is the question?")]
    kept, how = shorten(chat, chars_fit(40))
    assert kept[0]["content"].endswith("so what is the question?")
    assert len(kept[0]["content"]) <= 40 and not kept[0]["content"].startswith(" ")
    assert how.chars_cut == len(chat[0]["content"]) - len(kept[0]["content"])


def test_only_the_first_kept_message_is_cut_so_the_answer_stays_whole():
    chat = [msg("user", "q" * 100), msg("assistant", "answer")]
    kept, _ = shorten(chat, chars_fit(30))
    assert kept[1]["content"] == "answer" and len(kept[0]["content"]) == 24


def test_none_when_even_the_kept_turn_cut_down_does_not_fit():
    assert shorten([msg("user", "q" * 100), msg("assistant", "a" * 50)], chars_fit(30)) is None
    assert shorten([msg("system", "s" * 100)], chars_fit(30)) is None  # no turn to drop or cut


def test_the_binary_search_drops_exactly_what_the_literal_rule_drops():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 12)
        chat = [
            m
            for t in range(n)
            for m in (msg("user", "u" * rng.randint(1, 50)), msg("assistant", "a" * rng.randint(1, 50)))
        ]
        limit = rng.randint(20, 600)
        got = shorten(chat, chars_fit(limit))
        _, turns = split_turns(chat)
        literal = next((d for d in range(n) if chars_fit(limit)([m for t in turns[d:] for m in t])), None)
        if literal is None:
            assert got is None or got[1].chars_cut > 0
        else:
            assert got[1].turns_dropped == literal and got[1].chars_cut == 0


# ----------------------------------------------------------------- training views at 512 tokens


@pytest.fixture(scope="module")
def long_session():
    """10 turns, every message ~200 tokens, each naming its turn."""

    def text(tag):
        return f"[{tag}] " + FILLER * 11

    return [m for k in range(1, 11) for m in (msg("user", text(f"user {k}")), msg("assistant", text(f"answer {k}")))]


def trained_texts(tok, examples):
    """The decoded trained runs of every example, in order."""
    out = []
    for r in examples:
        run = []
        for t, label in zip(r.input_ids + [None], r.labels + [IGNORE]):
            if label != IGNORE:
                run.append(t)
            elif run:
                out.append(tok.decode(run))
                run = []
    return out


def test_train_chat_view_yields_one_example_per_turn_each_assistant_turn_trained_once(smollm2_tokenizer, long_session):
    tok = smollm2_tokenizer
    assert 3900 < count_tokens(tok, long_session) < 4100
    counts = {}
    examples = render_examples(tok, long_session, max_length=512, counts=counts)
    # a turn (two ~200-token messages) fits alone; a turn plus the one before it does not
    assert len(examples) == 10
    for k, r in enumerate(examples):
        assert r.input_ids == render_chat(tok, long_session[2 * k : 2 * k + 2]).input_ids
        assert len(r.input_ids) <= 512
    assert trained_texts(tok, examples) == [
        m["content"] + "<|im_end|>" for m in long_session if m["role"] == "assistant"
    ]
    assert counts == {"sessions_shortened": 1, "turns_dropped": sum(range(10))}


def test_train_ask_view_trains_each_user_turn_once_cutting_the_answer_it_follows(smollm2_tokenizer, long_session):
    tok = smollm2_tokenizer
    view = to_simulator(long_session, add_stop=True)
    counts = {}
    examples = render_examples(tok, view, max_length=512, counts=counts)
    assert all(len(r.input_ids) <= 512 for r in examples)
    questions = [m["content"] + "<|im_end|>" for m in long_session if m["role"] == "user"]
    assert trained_texts(tok, examples) == questions + [STOP_MARKER + "<|im_end|>"]
    # the simulator's 160-token system prompt leaves no room for a whole answer + question: the
    # answer before each question is cut, keeping its end (the tag at its start goes)
    assert counts["messages_cut"] == 9
    for r in examples[1:-1]:
        text = tok.decode(r.input_ids)
        assert "You play the human user" in text and "[answer" not in text


def test_dpo_pair_with_a_long_history_keeps_the_latest_turns(smollm2_tokenizer, long_session):
    tok = smollm2_tokenizer
    pair = {
        "prompt": long_session[:-1],
        "chosen": [msg("assistant", "It is the mill.")],
        "rejected": [msg("assistant", "It is the river.")],
    }
    counts = {}
    fitted = fit_pair(tok, pair, 512, counts)
    assert fitted["prompt"] == [long_session[-2]]  # only the question (turn 10) has room
    assert counts == {"pairs_shortened": 1, "turns_dropped": 9}
    assert fitted["chosen"] == pair["chosen"] and fitted["rejected"] == pair["rejected"]
    wider = fit_pair(tok, pair, 1024, {})  # room for turn 9 too, whole
    assert wider["prompt"] == long_session[-4:-1]


def test_dpo_pair_whose_answers_alone_are_too_long_is_dropped_and_counted(smollm2_tokenizer, long_session):
    pair = {
        "prompt": long_session[:3],
        "chosen": [msg("assistant", FILLER * 30)],
        "rejected": [msg("assistant", "No.")],
    }
    counts = {}
    assert fit_pair(smollm2_tokenizer, pair, 512, counts) is None
    assert counts == {"dropped_answers_too_long": 1}


@pytest.mark.parametrize("view", ["chat", "ask"])
def test_estimated_windows_are_the_ones_an_exact_count_picks(smollm2_tokenizer, monkeypatch, view):
    """render_examples estimates window lengths from the whole rendering; it must choose exactly
    what counting every candidate window would."""
    from parrot.train import render

    rng = random.Random(1)
    sessions = []
    for s in range(12):
        turns = rng.randint(2, 9)
        chat = [
            m
            for k in range(turns)
            for m in (
                msg("user", f"q{s}.{k} " + FILLER * rng.randint(0, 9)),
                msg("assistant", f"a{s}.{k} " + FILLER * rng.randint(1, 12)),
            )
        ]
        if s % 3 == 0:
            chat = [msg("system", "Answer as a historian.")] + chat
        sessions.append(to_simulator(chat, add_stop=True) if view == "ask" else chat)
    fast = [[r.input_ids for r in render_examples(smollm2_tokenizer, c, max_length=400)] for c in sessions]
    monkeypatch.setattr(render._Budget, "__call__", render._Budget.exactly)
    exact = [[r.input_ids for r in render_examples(smollm2_tokenizer, c, max_length=400)] for c in sessions]
    assert fast == exact and sum(map(len, fast)) > len(sessions)


def test_a_context_or_held_out_limit_that_cannot_work_is_an_error_naming_the_setting():
    from parrot import ParrotError
    from parrot.backends import BackendConfig
    from parrot.core.config import build_config
    from parrot.train.config import SFTTrainConfig

    with pytest.raises(ParrotError, match="context_length: expected at least 16, found 0"):
        build_config(BackendConfig, {"spec": "openai:m", "context_length": 0})
    with pytest.raises(ParrotError, match="eval_limit: expected at least 1, found 0"):
        build_config(SFTTrainConfig, {"data": ["d.jsonl"], "output": "o", "eval_limit": 0}, extra_field="trl_args")


def test_a_counting_server_that_fails_sends_the_conversation_unshortened():
    """A backend that counts through its server (gguf) and cannot reach it: the calls still go,
    and fail or succeed as calls to that server do, rather than the stage stopping."""
    import asyncio

    from parrot.backends import BackendConfig, Completion, SamplingParams
    from parrot.backends.base import Backend

    class Unreachable(Backend):
        def shortens(self):
            return True

        def context(self):
            return 64

        def count_tokens(self, messages):
            raise ConnectionRefusedError(111, "Connection refused")

        async def _agenerate(self, conversations, params):
            return [Completion(text=str(len(c))) for c in conversations]

    backend = Unreachable(BackendConfig(spec="openai:x"))
    [c] = asyncio.run(
        backend.agenerate([[msg("user", "hi"), msg("assistant", "yo"), msg("user", "?")]], SamplingParams(max_tokens=8))
    )
    assert c.text == "3" and c.shortened is None and backend.usage.shortened == 0
