"""The hf backend: chat template, left padding, end-of-turn stops, micro-batching."""

import asyncio
import shutil

import pytest
from fixtures.models import tiny_llama_config

from parrot import ParrotError
from parrot.backends import SamplingParams, load_backend

GREEDY = SamplingParams(temperature=0.0, max_tokens=6, seed=0)

PROMPTS = [
    [{"role": "user", "content": "Hi"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tell me about the history of the printing press in Europe."},
    ],
    [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And times three?"},
    ],
    [{"role": "user", "content": "Name a colour"}],
    [{"role": "user", "content": "A much longer question that goes on and on about many things at once"}],
]


def build_scripted_model(out, tokenizer_dir, script: dict[str, str], eos_token: str | None = None):
    """A Llama whose next token depends only on the current one, following ``script``
    (token -> next token): every layer's output projection is zero, so the residual stream is
    the current token's embedding, a basis vector the untied head maps to the scripted token."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if eos_token:
        tok.eos_token = eos_token
    ids = {t: tok.convert_tokens_to_ids(t) for pair in script.items() for t in pair}
    config = tiny_llama_config(tok, num_hidden_layers=1, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for i, (cur, nxt) in enumerate(script.items()):
            model.model.embed_tokens.weight[ids[cur], i] = 1.0
            model.lm_head.weight[ids[nxt], i] = 1.0
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory, smollm2_tokenizer_dir):
    """Random weights with an untied head, so greedy text varies with the prompt (the shared
    tied-embedding tiny model mostly repeats its last token)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    torch.manual_seed(1)
    config = tiny_llama_config(tok, tie_word_embeddings=False, initializer_range=0.5)
    out = tmp_path_factory.mktemp("random") / "m"
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


SCRIPT = {"Ċ": "Hello", "Hello": "!", "!": "<|im_end|>"}  # "Ċ" is "\n", the prompt's last token


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory, smollm2_tokenizer_dir):
    # eos is <|endoftext|>: only the chat template's end token <|im_end|> can stop the turn.
    return build_scripted_model(
        tmp_path_factory.mktemp("scripted") / "m", smollm2_tokenizer_dir, SCRIPT, eos_token="<|endoftext|>"
    )


def test_stops_at_the_templates_end_of_turn_token(scripted_dir):
    with load_backend(f"hf:{scripted_dir}") as model:
        [c] = model.generate([PROMPTS[0]], GREEDY.replace(max_tokens=20))
        assert "<|im_end|>" in model.tokenizer.convert_ids_to_tokens(model.stop_token_ids)
    assert c.text == "Hello!" and c.finish_reason == "stop" and c.completion_tokens == 3


def test_stop_strings_cut_the_text(scripted_dir):
    with load_backend(f"hf:{scripted_dir}") as model:
        [c] = model.generate([PROMPTS[0]], GREEDY.replace(stop=["!"]))
    assert c.text == "Hello" and c.finish_reason == "stop"


def test_max_tokens_gives_finish_reason_length(scripted_dir):
    with load_backend(f"hf:{scripted_dir}") as model:
        [c] = model.generate([PROMPTS[0]], GREEDY.replace(max_tokens=1))
    assert c.text == "Hello" and c.finish_reason == "length" and c.completion_tokens == 1


def test_an_immediate_end_of_turn_is_a_failure_not_an_empty_string(tmp_path, smollm2_tokenizer_dir):
    path = build_scripted_model(tmp_path / "m", smollm2_tokenizer_dir, {"Ċ": "<|im_end|>"})
    with load_backend(f"hf:{path}") as model:
        [c] = model.generate([PROMPTS[0]], GREEDY)
        assert model.usage.failures == 1
    assert c.text is None and c.error.startswith("empty_reply")


def test_left_padding_puts_every_prompt_flush_right(tiny_model_dir):
    with load_backend(f"hf:{tiny_model_dir}") as model:
        enc = model.encode([PROMPTS[0], PROMPTS[4]])  # same system prompt, longer question
        alone = model.encode(PROMPTS[:1])["input_ids"][0]
    ids, mask = enc["input_ids"], enc["attention_mask"]
    short = int(mask[0].sum())
    assert short == len(alone) < ids.shape[1]
    assert mask[0, : ids.shape[1] - short].sum() == 0 and mask[:, -1].tolist() == [1, 1]
    assert ids[0, -short:].tolist() == alone.tolist()


def test_prompt_uses_the_chat_template(tiny_model_dir):
    with load_backend(f"hf:{tiny_model_dir}") as model:
        ids = model.encode([PROMPTS[2]])["input_ids"][0]
        text = model.tokenizer.decode(ids)
    assert text.endswith("<|im_start|>user\nAnd times three?<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_start|>assistant\n4<|im_end|>" in text


def test_greedy_outputs_equal_between_batch_1_and_batch_n(random_dir):
    with load_backend(f"hf:{random_dir}", batch_size=1) as one:
        singles = one.generate(PROMPTS, GREEDY)
        assert one.batches_run == len(PROMPTS)
    with load_backend(f"hf:{random_dir}", batch_size=len(PROMPTS)) as many:
        batched = many.generate(PROMPTS, GREEDY)
        assert many.batches_run == 1
    assert [c.text for c in batched] == [c.text for c in singles]
    assert all(c.ok for c in batched) and len({c.text for c in batched}) > 1
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in singles]


def test_concurrent_callers_are_coalesced_into_batches(random_dir):
    with load_backend(f"hf:{random_dir}", batch_size=4) as model:

        async def one_coroutine_per_item():
            return await asyncio.gather(*(model.agenerate([p], GREEDY) for p in PROMPTS * 2))

        results = asyncio.run(one_coroutine_per_item())
        # 10 items, batch_size 4: three forward passes, not ten.
        assert model.batches_run == 3
        assert model.usage.requests == 10 and model.usage.completions == 10
    texts = [c.text for [c] in results]
    assert texts[:5] == texts[5:]  # same prompt, same greedy answer, whatever batch it landed in


def test_different_sampling_params_never_share_a_batch(random_dir):
    with load_backend(f"hf:{random_dir}", batch_size=8) as model:
        out = model.generate(PROMPTS[:4], [GREEDY, GREEDY.replace(max_tokens=2)] * 2)
        assert model.batches_run == 2
    assert [c.completion_tokens <= 2 for c in out] == [False, True, False, True]


def test_requests_differing_only_in_seed_share_a_batch_and_sample_differently(random_dir):
    seeded = [SamplingParams(temperature=1.0, top_p=1.0, max_tokens=6, seed=s) for s in (1, 2, 3, 4)]
    with load_backend(f"hf:{random_dir}", batch_size=8) as model:
        out = model.generate([PROMPTS[0]] * 4, seeded)
        again = model.generate([PROMPTS[0]] * 4, seeded)
        assert model.batches_run == 2
    assert len({c.text for c in out}) == 4
    assert [c.text for c in again] == [c.text for c in out]  # the same requests, the same batch


def test_seeded_sampling_is_reproducible(random_dir):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6, seed=123)
    with load_backend(f"hf:{random_dir}") as model:
        a = model.generate(PROMPTS[:2], params)
        b = model.generate(PROMPTS[:2], params)
    assert [c.text for c in a] == [c.text for c in b]


def test_bfloat16_on_cpu_generates(random_dir):
    import torch

    with load_backend(f"hf:{random_dir}", dtype="bfloat16") as model:
        assert model.model.dtype == torch.bfloat16
        [c] = model.generate([PROMPTS[0]], GREEDY)
    assert c.ok and c.completion_tokens > 0


def test_remote_code_is_not_trusted_unless_allowed(tiny_model_dir, monkeypatch):
    import transformers

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    load_backend(f"hf:{tiny_model_dir}").start()
    load_backend(f"hf:{tiny_model_dir}", trust_remote_code=True).start()
    assert seen == [False, True]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ParrotError, match="config.json"):
        load_backend(f"hf:{tmp_path}")


def test_checkpoint_without_chat_template_is_a_clear_error(tiny_model_dir, tmp_path):
    import json

    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ParrotError, match="chat template"):
        load_backend(f"hf:{copy}").start()


def test_one_bad_request_fails_alone_and_a_failing_engine_still_raises():
    """A batch that raises is run again request by request: the bad one fails as a Completion,
    the others are answered; when every request fails alone too, the callers see the error."""
    from parrot.backends.base import Completion, Usage
    from parrot.backends.batching import MicroBatcher

    def run_batch(conversations, params):
        if any("BAD" in c[-1]["content"] for c in conversations):
            raise ValueError("prompt longer than the model's context")
        return [Completion(text="ok: " + c[-1]["content"]) for c in conversations]

    batcher = MicroBatcher(run_batch, Usage(), max_batch=8, same_params=True)
    convs = [[{"role": "user", "content": t}] for t in ("a", "BAD", "c")]

    async def submit(cs):
        return await batcher.submit(cs, [GREEDY] * len(cs))

    out = asyncio.run(submit(convs))
    assert [c.text for c in out] == ["ok: a", None, "ok: c"]
    assert out[1].error == "request_failed: ValueError: prompt longer than the model's context"
    with pytest.raises(ValueError, match="longer than"):
        asyncio.run(submit([[{"role": "user", "content": "BAD 1"}], [{"role": "user", "content": "BAD 2"}]]))


def test_concurrent_first_calls_load_the_model_once(random_dir, monkeypatch):
    import time

    from transformers import AutoModelForCausalLM

    loads, real = [], AutoModelForCausalLM.from_pretrained

    def slow_load(*args, **kw):
        loads.append(1)
        time.sleep(0.2)  # both callers are inside start() by now
        return real(*args, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", slow_load)
    model = load_backend(f"hf:{random_dir}", batch_size=4)

    async def two_first_calls():
        return await asyncio.gather(model.agenerate([PROMPTS[0]], GREEDY), model.agenerate([PROMPTS[1]], GREEDY))

    outs = asyncio.run(two_first_calls())
    model.close()
    assert len(loads) == 1 and all(c.ok for [c] in outs)


def test_a_prompt_longer_than_the_context_is_cut_keeping_its_end(random_dir):
    too_long = [{"role": "user", "content": "word " * 3000 + "What now?"}]  # the context: 2048 positions
    with load_backend(f"hf:{random_dir}", batch_size=4) as model:
        short, long_ = model.generate([PROMPTS[0], too_long], GREEDY)
        assert model.usage.shortened == 1
    assert short.ok and short.shortened is None
    assert long_.ok and long_.shortened["turns_dropped"] == 0 and long_.shortened["chars_cut"] > 0
    assert long_.prompt_tokens + GREEDY.max_tokens <= 2048


def test_a_long_conversation_loses_its_oldest_turns_and_lowers_max_tokens_to_what_is_left(random_dir):
    turns = [{"role": r, "content": f"{r} {k} " + "word " * 300} for k in range(8) for r in ("user", "assistant")]
    with load_backend(f"hf:{random_dir}", context_length=1024) as model:
        [c] = model.generate([turns[:-1]], SamplingParams(max_tokens=1024, temperature=0.0))
        kept = model.count_tokens(turns[:-1][2 * c.shortened["turns_dropped"] :])
    assert c.ok and c.shortened["turns_dropped"] > 0 and c.shortened["chars_cut"] == 0
    assert kept + 512 <= 1024  # room for min(max_tokens, context / 2)
    assert c.shortened["max_tokens"] == 1024 - kept  # and max_tokens lowered to what is left


def test_a_banned_text_never_begins_to_be_sampled(tmp_path, smollm2_tokenizer_dir):
    """``SamplingParams.ban``: the first token of the text is kept from being sampled; the model's
    next choice comes instead (here "Hi", scripted second to "Hello" after the prompt)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    out = build_scripted_model(tmp_path / "m", smollm2_tokenizer_dir, {**SCRIPT, "Hi": "!"}, eos_token="<|endoftext|>")
    model = LlamaForCausalLM.from_pretrained(out)
    hi = AutoTokenizer.from_pretrained(out).convert_tokens_to_ids("Hi")
    with torch.no_grad():
        model.lm_head.weight[hi, 0] = 0.5  # after "\n" (column 0): "Hello" first, "Hi" second
    model.save_pretrained(out)
    with load_backend(f"hf:{out}") as backend:
        [free, banned] = [
            backend.generate([PROMPTS[0]], GREEDY.replace(max_tokens=20, ban=ban))[0] for ban in ([], ["Hello!"])
        ]
        assert backend.banned_ids(["Hello!", "Hello there"]) == [backend.tokenizer.convert_tokens_to_ids("Hello")]
    assert free.text == "Hello!" and banned.text == "Hi!"
