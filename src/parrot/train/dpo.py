"""``parrot train-dpo``: TRL's DPOTrainer on preference pairs (CaPO's output).

Pairs are TRL's conversational preference format, passed to TRL as they are (TRL applies the
chat template and masks the prompt)::

    {"id": "...", "prompt": [..., {"role": "user", ...}],
     "chosen": [{"role": "assistant", ...}], "rejected": [{"role": "assistant", ...}], "meta": {...}}

A pair whose prompt plus chosen or rejected answer is longer than ``max_length`` tokens has its
prompt shortened by the one rule (:mod:`parrot.core.shorten`): the oldest whole turns of the history
go first; the question is cut (keeping its end) only when it alone leaves no room. The answers
are never cut: a pair whose answers alone do not fit is dropped and counted. (TRL's own
truncation works on tokens, not turns, and cuts the answer's end; with the prompt shortened
here it never has to act.) The reference model: with LoRA, the starting model with the adapter switched off (no second copy);
with full fine-tuning, a frozen copy loaded from ``ref_model`` (default: the starting model).

    parrot train-dpo data/capo.jsonl --model models/chat -o models/dpo beta=0.1 learning_rate=5e-7
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from parrot import ParrotError
from parrot.core.checkpoint import check_weights, resolve_model_path
from parrot.core.dialogue import check_dialogue
from parrot.core.jsonl import read_jsonl
from parrot.core.outputs import writes_output
from parrot.core.shorten import shorten
from parrot.core.tokens import count_tokens
from parrot.train.config import DPOTrainConfig
from parrot.train.dataset import stream_dataset
from parrot.train.launch import relaunch_under_accelerate
from parrot.train.trainer import make_trl_config, run_training, trl_kwargs, trl_trainer

log = logging.getLogger("parrot.train")


def check_pair(record: dict, where: str) -> dict:
    """Validate a preference pair; return ``{"prompt", "chosen", "rejected"}`` (meta left out)."""
    for key in ("prompt", "chosen", "rejected"):
        if not isinstance(record.get(key), list) or not record[key]:
            raise ParrotError(
                f"{where}: expected a non-empty message list in {key!r}, found {type(record.get(key)).__name__}"
            )
    check_dialogue({"messages": record["prompt"]}, f"{where}: prompt")
    if record["prompt"][-1]["role"] != "user":
        raise ParrotError(f"{where}: the prompt must end with a user message, found {record['prompt'][-1]['role']!r}")
    for key in ("chosen", "rejected"):
        msgs = record[key]
        if len(msgs) != 1 or msgs[0].get("role") != "assistant" or not isinstance(msgs[0].get("content"), str):
            raise ParrotError(
                f"{where}: {key!r} must hold one assistant message, found "
                f"{[m.get('role') for m in msgs if isinstance(m, dict)]}"
            )
    return {
        key: [{"role": m["role"], "content": m["content"]} for m in record[key]]
        for key in ("prompt", "chosen", "rejected")
    }


def pair_length(tokenizer, pair: dict) -> int:
    """Tokens of the longer of prompt+chosen and prompt+rejected, as the template renders them."""
    return max(count_tokens(tokenizer, pair["prompt"] + pair[key]) for key in ("chosen", "rejected"))


def fit_pair(tokenizer, pair: dict, max_length: int, counts: dict) -> dict | None:
    """``pair`` with its prompt shortened to fit ``max_length`` together with each answer
    (see :mod:`parrot.core.shorten`); None when the answers alone leave no room."""
    got = shorten(pair["prompt"], lambda prompt: pair_length(tokenizer, {**pair, "prompt": prompt}) <= max_length)
    if got is None:
        counts["dropped_answers_too_long"] = counts.get("dropped_answers_too_long", 0) + 1
        return None
    prompt, how = got
    if how:
        counts["pairs_shortened"] = counts.get("pairs_shortened", 0) + 1
        how.count_in(counts)
    return {**pair, "prompt": prompt}


def read_pairs(paths: list[str], tokenizer, max_length: int, counts: dict, limit: int | None = None) -> Iterator[dict]:
    """Stream checked pairs, each shortened to fit ``max_length``, counting reads, shortenings
    and drops in ``counts``."""
    read = 0
    for path in paths:
        for lineno, record in read_jsonl(path):
            if limit is not None and read >= limit:
                return
            read += 1
            counts["pairs_read"] = counts.get("pairs_read", 0) + 1
            pair = fit_pair(tokenizer, check_pair(record, f"{path}:{lineno}"), max_length, counts)
            if pair is None:
                continue
            counts["pairs_trained"] = counts.get("pairs_trained", 0) + 1
            yield pair


def build_pair_dataset(
    paths: list[str],
    tokenizer,
    max_length: int,
    cache_dir: str,
    counts: dict,
    limit: int | None = None,
    empty_message: str | None = None,
):
    """A ``datasets.Dataset`` of checked, fitted pairs, streamed to Arrow files in ``cache_dir``."""
    from datasets import Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    features = Features({"prompt": messages, "chosen": messages, "rejected": messages})
    return stream_dataset(
        lambda: read_pairs(paths, tokenizer, max_length, counts, limit),
        features,
        cache_dir,
        empty_message
        or f"{', '.join(paths)}: no preference pair fits max_length={max_length} "
        "even with its history shortened (the answers alone are longer)",
        counts,
    )


@writes_output
def train_dpo(cfg: DPOTrainConfig) -> dict | None:
    """``parrot train-dpo``: DPO on preference pairs; returns the manifest's numbers."""
    if relaunch_under_accelerate(cfg):
        return None

    def datasets(tokenizer, cache: str, counts: dict, eval_counts: dict):
        train_ds = build_pair_dataset(cfg.data, tokenizer, cfg.max_length, cache, counts, cfg.limit)
        eval_ds = None
        if cfg.eval_data:
            eval_ds = build_pair_dataset(
                [cfg.eval_data],
                tokenizer,
                cfg.max_length,
                cache,
                eval_counts,
                empty_message=f"{cfg.eval_data}: no evaluation pair fits",
            )
        if counts.get("pairs_shortened"):
            log.info(
                "train-dpo: %d of %d pairs longer than max_length=%d: prompts shortened (%d history "
                "turns left out, %d questions cut)",
                counts["pairs_shortened"],
                counts["pairs_read"],
                cfg.max_length,
                counts.get("turns_dropped", 0),
                counts.get("messages_cut", 0),
            )
        if counts.get("dropped_answers_too_long"):
            log.warning(
                "train-dpo: %d of %d pairs dropped: their answers alone are longer than max_length=%d",
                counts["dropped_answers_too_long"],
                counts["pairs_read"],
                cfg.max_length,
            )
        return train_ds, eval_ds

    return run_training(
        cfg,
        datasets,
        dpo_trainer,
        data_timing="data_s",
        extra_log_keys=("rewards/accuracies", "rewards/margins"),
    )


def dpo_trainer(cfg: DPOTrainConfig, tokenizer, model_path, train_ds, eval_ds=None, counts: dict | None = None):
    """TRL's DPOTrainer with Parrot's reference model (see the module docstring); ``counts`` gets
    which reference it is."""
    from trl import DPOConfig, DPOTrainer

    args = make_trl_config(DPOConfig, trl_kwargs(cfg))
    counts = {} if counts is None else counts
    ref_model = None
    if cfg.ref_model or not cfg.lora:
        ref_path = resolve_model_path(cfg.ref_model or cfg.model)
        check_weights(ref_path)
        ref_model = _load_reference(ref_path, args)
        counts["reference"] = str(ref_path)
    else:
        counts["reference"] = "starting model with the LoRA adapter disabled"
    return trl_trainer(DPOTrainer, cfg, args, tokenizer, model_path, train_ds, eval_ds, ref_model=ref_model)


def _load_reference(path, args):
    """The frozen reference for full fine-tuning, loaded like TRL loads the policy."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = dict(args.model_init_kwargs or {}) if isinstance(args.model_init_kwargs, dict) else {}
    dtype = kwargs.pop("dtype", None) or torch.float32
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    kwargs.pop("device_map", None)
    kwargs.setdefault("trust_remote_code", args.trust_remote_code)  # as TRL loads the policy
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kwargs)
