"""The token arithmetic of a run, before it runs: what each call sends and gets back, counted the
way the backends count it (the prompt as the chat template renders it, the answer's tokens, the
prompt tokens an engine reuses from its cache), and what training reads and computes.

Messages are token counts here, not texts: a conversation is a list of ``(role, tokens)``.

- :class:`Template` turns message lengths into a prompt's length: a fixed part (the chat
  template's opening, its default system message where it adds one, the generation prompt) and a
  few tokens around each message, both measured on the tokenizer (:meth:`Template.measure`).
- :func:`conversation_calls`: a conversation that grows by one exchange per call (a synthesis
  session in either role's view, a benchmark question answered turn by turn). Each call's prompt
  is everything so far, shortened by the one rule of :mod:`parrot.core.shorten` when it would not
  leave room for the answer in the context; the cache reuses the previous call's prompt and answer
  (:data:`CACHES`).
- :func:`train_flops`: 6·N per trained token for full fine-tuning, 4·N with LoRA, 2·N more with
  gradient checkpointing, and DPO's reference pass.

>>> t = Template(fixed=3, per_message=5, fixed_with_system=2)
>>> calls = conversation_calls([("system", 10)], [(20, 30), (40, 50)], t)
>>> [(c.prompt, c.cached, c.completion) for c in calls]     # 2 + 2*5 + 10 + 20; then + 5 + 30 + 5 + 40
[(42, 0, 30), (122, 72, 50)]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from parrot.core.shorten import shorten

#: How an engine reuses the prompt of a conversation's previous call. ``prefix``: llama.cpp's
#: slots and vLLM's prefix caching keep the previous prompt and the answer generated after it, so
#: all of that is reused when the next prompt starts with it. ``openai``: OpenAI caches prompts of
#: 1,024 tokens or more, the shared prefix in steps of 128 tokens. ``none``: a transformers model
#: reads every prompt whole.
CACHES = ("prefix", "openai", "none")
OPENAI_CACHE_MIN, OPENAI_CACHE_STEP = 1024, 128


@dataclass(frozen=True)
class Template:
    """A chat template's tokens around the messages' own."""

    fixed: int  # opening, default system message (a template that adds one), generation prompt
    per_message: int  # role header and end of turn of each message
    fixed_with_system: int | None = None  # the fixed part when the conversation has its own system message

    def prompt(self, lengths: list[int], *, system: bool = False) -> int:
        """Tokens of a prompt whose messages hold ``lengths`` tokens."""
        fixed = self.fixed_with_system if system and self.fixed_with_system is not None else self.fixed
        return fixed + self.per_message * len(lengths) + sum(lengths)

    @classmethod
    def measure(cls, tokenizer) -> "Template":
        """The template of a tokenizer, from three renderings of one-token messages."""
        from parrot.core.tokens import count_tokens, token_lengths

        x = token_lengths(tokenizer, ["x"])[0]

        def over(roles: list[str]) -> int:
            msgs = [{"role": r, "content": "x"} for r in roles]
            return count_tokens(tokenizer, msgs, generation_prompt=True) - x * len(roles)

        one, three = over(["user"]), over(["user", "assistant", "user"])
        per = (three - one) // 2
        return cls(fixed=one - per, per_message=per, fixed_with_system=over(["system", "user"]) - 2 * per)


@dataclass
class Call:
    """One request: its prompt, the part of it the engine reuses, its answer."""

    prompt: int
    completion: int
    cached: int = 0
    shortened: bool = False


@dataclass
class Tokens:
    """A role's calls and tokens, as the backends' usage counts them."""

    calls: float = 0
    prompt: float = 0
    cached: float = 0
    completion: float = 0

    def add(self, calls: list[Call], times: float = 1.0) -> "Tokens":
        self.calls += len(calls) * times
        self.prompt += sum(c.prompt for c in calls) * times
        self.cached += sum(c.cached for c in calls) * times
        self.completion += sum(c.completion for c in calls) * times
        return self

    def __iadd__(self, other: "Tokens") -> "Tokens":
        for k in ("calls", "prompt", "cached", "completion"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self

    @property
    def total(self) -> float:
        return self.prompt + self.completion

    def to_dict(self) -> dict:
        return {k: round(getattr(self, k)) for k in ("calls", "prompt", "cached", "completion")}


def reused(cache: str, prompt: int, before: int) -> int:
    """Of a ``prompt`` whose first ``before`` tokens the engine saw last time, the tokens it reuses."""
    before = min(before, prompt)
    if cache == "prefix":
        return before
    if cache == "openai" and prompt >= OPENAI_CACHE_MIN:
        return before // OPENAI_CACHE_STEP * OPENAI_CACHE_STEP
    return 0


def fitted_prompt(
    messages: list[tuple[str, int]], t: Template, *, context: int | None, max_tokens: int
) -> tuple[int, int, bool]:
    """``(prompt tokens, answer tokens allowed, shortened)`` of ``messages`` sent to a model with
    ``context`` tokens, as the backends fit it (:meth:`parrot.backends.base.Backend.fit`): room for
    ``min(max_tokens, context / 2)`` answer tokens, the oldest whole turns left out first, the
    kept turn cut to what is left when it alone is too long."""
    system = bool(messages) and messages[0][0] == "system"
    lengths = [n for _, n in messages]
    full = t.prompt(lengths, system=system)
    if context is None or full + min(max_tokens, context // 2) <= context:
        return full, max_tokens, False
    room = min(max_tokens, context // 2)
    as_dicts = [{"role": r, "content": "", "tokens": n} for r, n in messages]
    got = shorten(as_dicts, lambda m: t.prompt([x["tokens"] for x in m], system=system) + room <= context)
    if got is None or got[1].chars_cut:  # the kept turn alone is too long: cut to the room left
        prompt = context - room
    else:
        prompt = t.prompt([x["tokens"] for x in got[0]], system=system)
    return prompt, min(max_tokens, context - prompt), True


def conversation_calls(
    head: list[tuple[str, int]],
    exchanges: list[tuple[int, int]],
    t: Template,
    *,
    cache: str = "prefix",
    context: int | None = None,
    max_tokens: int | None = None,
    asked_role: str = "user",
) -> list[Call]:
    """One call per exchange ``(message, answer)``: the prompt is ``head``, every earlier exchange
    (its message, then its answer as the other role) and this exchange's message; the completion
    is the answer (at most what the context leaves). The engine reuses what the previous call of
    the conversation read and wrote, unless a shortening changed the start of the prompt."""
    answer_role = "assistant" if asked_role == "user" else "user"
    messages = list(head)
    calls: list[Call] = []
    seen, seen_shortened = 0, False
    for message, answer in exchanges:
        messages.append((asked_role, message))
        limit = max_tokens if max_tokens is not None else answer
        prompt, allowed, cut = fitted_prompt(messages, t, context=context, max_tokens=limit)
        completion = min(answer, allowed)
        cached = 0 if (cut or seen_shortened) else reused(cache, prompt, seen)
        calls.append(Call(prompt, completion, cached, cut))
        seen, seen_shortened = prompt + completion, cut
        messages.append((answer_role, completion))
    return calls


@dataclass
class Training:
    """What a training step computes: the tokens its optimizer steps read, the tokens only read
    forward (a held-out loss, DPO's reference model), and the FLOPs of both."""

    params: float  # N, the model's parameters
    tokens: float = 0  # trained tokens (forward and backward)
    forward_tokens: float = 0  # tokens read forward only
    lora: bool = False
    checkpointing: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def flops_per_token(self) -> float:
        return train_flops_per_token(self.params, lora=self.lora, checkpointing=self.checkpointing)

    @property
    def flops(self) -> float:
        return self.tokens * self.flops_per_token + self.forward_tokens * 2 * self.params


def train_flops_per_token(params: float, *, lora: bool = False, checkpointing: bool = False) -> float:
    """FLOPs of one trained token. A forward pass costs 2·N; the backward pass 4·N with full
    fine-tuning (gradients of the activations and of every weight), 2·N with LoRA (gradients of the
    activations through the frozen weights; the adapters' own weights are a rounding error at
    r << hidden size). Gradient checkpointing runs the forward again in the backward: 2·N more.

    >>> [train_flops_per_token(1.0, lora=lo, checkpointing=ck) for lo in (False, True) for ck in (False, True)]
    [6.0, 8.0, 4.0, 6.0]
    """
    return (6.0 if not lora else 4.0) * params + (2.0 * params if checkpointing else 0.0)


def dpo_tokens(pairs: float, prompt: float, chosen: float, rejected: float) -> tuple[float, float]:
    """``(trained, forward only)`` tokens of DPO over ``pairs`` pairs: the policy trains on the
    prompt with the chosen answer and the prompt with the rejected one; the reference model reads
    both forward once (TRL computes its log-probabilities on the same batches, or once before
    training with ``precompute_ref_log_probs``: the same count for one epoch).

    >>> dpo_tokens(10, 100, 20, 30)
    (2500.0, 2500.0)
    """
    seqs = pairs * (2 * prompt + chosen + rejected)
    return float(seqs), float(seqs)
