"""``parrot pipeline --plan --estimate``: each step's bill before it runs.

Per step and in total: the calls and the prompt (cached among them) and completion tokens of each
model role, the tokens a training step reads and its FLOPs, the GPU hours at the settings' MFU and
peak, the API cost where the role has a price, and the wall time at the settings' throughput. The
numbers come from the data, never from a table of guesses:

- **the real data**: the first prepare step's output (its source, read through the same cleaning,
  when the step has not run yet): the tokens of its first questions (a synthesis step's seeds), its
  follow-up questions and answers (what a simulator, an assistant or a model under test writes,
  capped at the role's ``max_tokens``), its sessions' turns (a trained simulator's session lengths,
  within ``min_turns`` .. ``max_turns``), its sessions whole (training examples);
- **the benchmarks**: their questions and the judge prompts, rendered;
- **a finished step's manifest**: a step already run is billed at what its manifest recorded (the
  backends' usage, the trained tokens, its seconds), and its redraw rate replaces the default;
- **the shortening rule**: growing histories are counted as they are sent, each prompt shortened by
  :mod:`parrot.core.shorten` when it would not fit the role's context;
- **the cache**: the prompt tokens an engine reuses from the previous call of a conversation
  (llama.cpp's slots, vLLM's prefix caching, OpenAI's prompt caching: :mod:`parrot.pipeline.tokens`).

Prices are the user's (``costs.prices``, per million prompt / cached / completion tokens, by role
or model); a role without one shows its tokens and an unknown cost. See docs/experiment.md,
"Estimate: the bill before the run".
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.backends.spec import read_spec
from parrot.core.config import opt
from parrot.pipeline.tokens import (
    Tokens,
    Training,
)

#: The stages whose steps call models, and those that train.
GENERATING = ("synthesize", "capo", "eval answer", "eval judge")
TRAINING = ("train-ask", "train-chat", "train-dpo")


@dataclass
class CostSettings:
    """What the estimate assumes (``costs:`` in a pipeline config; each default is stated in
    docs/experiment.md with what it was measured on)."""

    prices: dict = opt(
        dict,
        "USD per million tokens, by STEP.ROLE (judge_mtbench.judge), ROLE (judge) or model spec "
        "(openai:gpt-4o): {prompt: P, cached: C, completion: Q}; cached defaults to prompt",
    )
    gpu_peak_tflops: float = opt(989.0, "a GPU's peak dense bf16 TFLOP/s (H100 SXM: 989)", above=0)
    mfu: float = opt(0.4, "model FLOPs utilisation of training on GPUs", above=0, max=1)
    gpus: int | None = opt(None, "GPUs a training step uses (default: its num_processes, else 1)", min=1)
    cpu_gflops: float = opt(90.0, "training FLOP/s reached on this machine's CPU, in GFLOP/s", above=0)
    train_device: str = opt(
        "auto",
        "where training runs: auto (GPU for a model of 1B parameters or more), cpu or gpu",
        choices=["auto", "cpu", "gpu"],
    )
    params: dict = opt(dict, "model parameters by spec or path, where the name or config does not say (8e9)")
    cpu_prefill_tok_s: float = opt(200.0, "prompt tokens/s of an in-process model on CPU (llama.cpp, hf)", above=0)
    cpu_decode_tok_s: float = opt(38.0, "generated tokens/s of an in-process model on CPU, all slots", above=0)
    gpu_prefill_tok_s: float = opt(20000.0, "prompt tokens/s of vLLM on one GPU, for an 8B model", above=0)
    gpu_decode_tok_s: float = opt(2500.0, "generated tokens/s of vLLM on one GPU, batched, for an 8B model", above=0)
    api_tok_s: float = opt(50.0, "generated tokens/s of one request to an API endpoint", above=0)
    api_latency_s: float = opt(0.5, "seconds an API request waits before its first token", min=0)
    start_s: float = opt(5.0, "seconds to start an in-process model (a step that loads one)", min=0)
    train_start_s: float = opt(5.0, "seconds a training step spends loading, saving and exporting its model", min=0)
    redraw_rate: float = opt(0.25, "simulator questions drawn again, per question kept (synthesize guardrails)", min=0)
    context_share: float = opt(
        0.3, "context-dependent questions per question after the first (CaPO selection)", min=0, max=1
    )
    sample: int = opt(400, "real sessions read to measure lengths", min=10)
    other_seconds: dict = opt(
        lambda: {"prepare": 5.0, "stats": 15.0, "filter": 0.2, "report": 3.0, "eval verify": 0.2},
        "seconds of the steps that call no model (not modelled)",
    )


@dataclass
class Price:
    prompt: float
    cached: float
    completion: float

    def cost(self, t: Tokens) -> float:
        return ((t.prompt - t.cached) * self.prompt + t.cached * self.cached + t.completion * self.completion) / 1e6


@dataclass
class RoleBill:
    spec: str
    tokens: Tokens
    price: Price | None = None

    @property
    def cost(self) -> float | None:
        return self.price.cost(self.tokens) if self.price else None


@dataclass
class StepBill:
    """One step's estimate (or, from its manifest, its actual numbers)."""

    step: str
    stage: str
    roles: dict[str, RoleBill] = field(default_factory=dict)
    training: Training | None = None
    device: str = "cpu"
    gpu_hours: float = 0.0
    seconds: float = 0.0
    source: str = "estimate"  # or "manifest": a finished step, at what it recorded
    notes: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> float:
        return sum(r.tokens.total for r in self.roles.values())

    @property
    def cost(self) -> float | None:
        costs = [r.cost for r in self.roles.values()]
        return None if any(c is None for c in costs) else sum(costs)

    def to_dict(self) -> dict:
        out = {
            "step": self.step,
            "stage": self.stage,
            "source": self.source,
            "roles": {k: {"spec": r.spec, **r.tokens.to_dict(), "cost": r.cost} for k, r in self.roles.items()},
            "tokens": round(self.tokens),
            "seconds": round(self.seconds, 1),
        }
        if self.training:
            out["training"] = {
                "params": self.training.params,
                "tokens": round(self.training.tokens),
                "forward_tokens": round(self.training.forward_tokens),
                "flops": self.training.flops,
                "lora": self.training.lora,
                "device": self.device,
                "gpu_hours": round(self.gpu_hours, 3),
            }
        return out


# ---------------------------------------------------------------- the real data's lengths


@dataclass
class Profile:
    """Token lengths measured on real sessions."""

    first: list[int]  # first questions (with their characters, for max_seed_chars)
    first_chars: list[int]
    followups: list[int]  # user questions after the first
    answers: list[int]  # assistant replies
    turns: list[int]  # answered turns per session
    sessions: list[list[tuple[str, int]]]  # each session's messages as (role, tokens)
    source: str
    count: int | None = None  # sessions in the whole data (the sample is its first ones)
    chars: float = 0.0  # mean characters of a sampled session's messages
    #: the follow-ups the context detector flags (parrot.stats.context): what CaPO selects, shorter
    #: than follow-ups at large ("why?", "and the second one?")
    context_followups: list[int] = field(default_factory=list)

    def capped_mean(self, values: list[int], cap: int | None) -> float:
        if not values:
            raise ParrotError(f"{self.source}: no messages to measure lengths on")
        return statistics.fmean(min(v, cap) if cap else v for v in values)


def measure(dialogues, tokenizer, source: str, limit: int) -> Profile:
    """The lengths of up to ``limit`` dialogues (texts cut at 20,000 characters, a longer one's
    tokens scaled up by its length)."""
    from parrot.core.tokens import token_lengths
    from parrot.stats.context import is_context_dependent

    sessions_text: list[list[tuple[str, str]]] = []
    for d in dialogues:
        msgs = [(m["role"], m["content"]) for m in d["messages"] if m.get("role") in ("system", "user", "assistant")]
        if msgs:
            sessions_text.append(msgs)
        if len(sessions_text) >= limit:
            break
    texts = [t for s in sessions_text for _, t in s]
    cut = 20000
    counted = token_lengths(tokenizer, [t[:cut] for t in texts])
    lengths = iter(round(n * len(t) / cut) if len(t) > cut else n for n, t in zip(counted, texts))
    p = Profile([], [], [], [], [], [], source)
    p.chars = statistics.fmean(sum(len(t) for _, t in s) for s in sessions_text) if sessions_text else 0.0
    for s in sessions_text:
        msgs = [(role, next(lengths), len(text)) for role, text in s]
        users = [m for m in msgs if m[0] == "user"]
        if users:
            p.first.append(users[0][1])
            p.first_chars.append(users[0][2])
        p.followups += [m[1] for m in users[1:]]
        asked = [(n, text) for (role, n, _), (_, text) in zip(msgs, s) if role == "user"]
        p.context_followups += [n for n, text in asked[1:] if is_context_dependent(text)]
        p.answers += [m[1] for m in msgs if m[0] == "assistant"]
        p.turns.append(sum(m[0] == "assistant" for m in msgs))
        p.sessions.append([(r, n) for r, n, _ in msgs])
    if not p.answers:
        raise ParrotError(f"{source}: no answered sessions among the first {limit} to measure lengths on")
    return p


# ---------------------------------------------------------------- models and roles


_SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([mb])(?![a-z])", re.I)


def params_from_config(path: Path) -> float | None:
    """Parameters of a transformers checkpoint from its ``config.json`` (decoder-only, gated MLP)."""
    import json

    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        return None
    c = json.loads(cfg_file.read_text(encoding="utf-8"))
    try:
        d, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    except KeyError:
        return None
    heads = c.get("num_attention_heads") or 1
    kv = d * (c.get("num_key_value_heads") or heads) // heads
    ff = c.get("intermediate_size") or 4 * d
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * ff
    return float(layers * per_layer + vocab * d * (1 if c.get("tie_word_embeddings", True) else 2))


def params_from_name(name: str) -> float | None:
    """``Llama-3.1-8B-Instruct`` -> 8e9, ``SmolLM2-135M`` -> 1.35e8."""
    found = _SIZE.findall(Path(name).name)
    if not found:
        return None
    value, unit = found[-1]
    return float(value) * (1e9 if unit.lower() == "b" else 1e6)


def engine(spec: str) -> str:
    """How a role's model runs, for its throughput and cache: ``cpu`` (llama.cpp, transformers),
    ``gpu`` (vLLM in-process or a vLLM server on this machine) or ``api`` (a hosted endpoint)."""
    parsed = read_spec(spec)
    kind = parsed.kind if parsed else "hf"
    if kind == "vllm":
        return "gpu"
    if kind == "openai":
        return "api"
    return "cpu"


def cache_kind(spec: str, base_url: Any) -> str:
    """The cache rule of :mod:`parrot.pipeline.tokens` for a role."""
    parsed = read_spec(spec)
    kind = parsed.kind if parsed else "hf"
    if kind in ("gguf", "vllm"):
        return "prefix"
    if kind == "openai":
        return "prefix" if base_url else "openai"  # a local server (vLLM, llama.cpp) keeps prefixes
    return "none"


def role_context(role) -> int | None:
    """Tokens one request of a role may hold, where the estimate can know it without a model."""
    if role.context_length:
        return role.context_length
    parsed = read_spec(role.spec)
    if parsed and parsed.kind == "gguf":
        return role.ctx_size // max(1, role.slots)
    return None


def find_price(prices: dict, step: str, role: str, spec: str) -> Price | None:
    """The price of ``step``'s ``role``: by ``STEP.ROLE``, ``ROLE`` or its model spec."""
    for key in (f"{step}.{role}", role, spec):
        if key in prices:
            return read_price(key, prices[key])
    return None


def read_price(key: str, value: Any) -> Price:
    where = f"costs: prices: {getattr(key, 'place', '') or key}"
    if not isinstance(value, dict) or not {"prompt", "completion"} <= set(value):
        raise ParrotError(
            f"{where}: expected {{prompt: USD, cached: USD, completion: USD}} per million tokens, found {value!r}"
        )
    unknown = set(value) - {"prompt", "cached", "completion"}
    if unknown:
        raise ParrotError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (prompt, cached, completion)")
    try:
        nums = {k: float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise ParrotError(f"{where}: prices are numbers (USD per million tokens), found {value!r}") from None
    if any(v < 0 for v in nums.values()):
        raise ParrotError(f"{where}: prices are at least 0, found {value!r}")
    return Price(nums["prompt"], nums.get("cached", nums["prompt"]), nums["completion"])


def generation_seconds(spec: str, t: Tokens, s: CostSettings, *, parallel: int, params: float | None) -> float:
    """Wall time of a role's calls: its start, the prompt tokens not reused, the answers."""
    kind = engine(spec)
    uncached = t.prompt - t.cached
    if kind == "api":
        rounds = t.calls / max(1, parallel)
        return rounds * s.api_latency_s + t.completion / (s.api_tok_s * max(1, parallel))
    if kind == "gpu":
        scale = (params or 8e9) / 8e9
        return s.start_s + uncached * scale / s.gpu_prefill_tok_s + t.completion * scale / s.gpu_decode_tok_s
    return s.start_s + uncached / s.cpu_prefill_tok_s + t.completion / s.cpu_decode_tok_s


def training_seconds(training: Training, s: CostSettings, device: str, gpus: int) -> tuple[float, float]:
    """``(wall seconds, GPU hours)`` of a training step."""
    if device == "gpu":
        gpu_seconds = training.flops / (s.gpu_peak_tflops * 1e12 * s.mfu)
        return s.train_start_s + gpu_seconds / gpus, gpu_seconds / 3600
    return s.train_start_s + training.flops / (s.cpu_gflops * 1e9), 0.0


def mean(values) -> float:
    values = list(values)
    return statistics.fmean(values) if values else 0.0


def ceil_div(a: float, b: float) -> int:
    return int(math.ceil(a / b)) if b else 0
