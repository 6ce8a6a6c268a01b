"""``parrot train-ask`` and ``parrot train-chat``: TRL's SFTTrainer on pre-rendered sessions.

Both render each Dialogue with :func:`parrot.train.render.render_chat` (the one render-and-mask
function) and hand TRL pre-tokenized ``input_ids`` + ``labels``, so TRL never re-templates
them. ``train-chat`` trains the assistant turns as they are; ``train-ask`` first swaps roles
(:func:`parrot.synthesize.roleswap.to_simulator`), so the same assistant-turn loss falls on the real user
turns. By default whole sessions are packed best-fit into ``max_length`` rows and the batch is
flattened padding-free (TRL's ``packing_strategy="bfd"``): no compute on padding, and the
position ids restart at each session so attention never crosses sessions.

    parrot train-chat data/sharegpt.jsonl -o models/chat max_steps=200 learning_rate=1e-4
    parrot train-ask  data/sharegpt.jsonl -o models/ask --add-stop
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from parrot import ParrotError
from parrot.core.dialogue import read_dialogues
from parrot.core.outputs import writes_output
from parrot.synthesize.roleswap import STOP_MARKER, to_simulator
from parrot.train.config import AskTrainConfig, SFTTrainConfig
from parrot.train.dataset import stream_dataset
from parrot.train.launch import relaunch_under_accelerate
from parrot.train.render import render_examples
from parrot.train.trainer import make_trl_config, run_training, trl_kwargs, trl_trainer

log = logging.getLogger("parrot.train")

View = Callable[[dict, str], list]  # (dialogue record, where) -> chat messages to render


def chat_view(record: dict, where: str) -> list[dict]:
    """train-chat trains the dialogue as it is (system message kept, never trained)."""
    return record["messages"]


def ask_view(system_prompt: str | None = None, add_stop: bool = False) -> View:
    """train-ask trains the role-swapped dialogue; a record's ``meta.topic`` goes into the opening."""

    def view(record: dict, where: str) -> list[dict]:
        return to_simulator(
            record["messages"],
            system_prompt=system_prompt,
            add_stop=add_stop,
            topic=record.get("meta", {}).get("topic"),
            where=where,
        )

    return view


def rendered_sessions(
    paths: list[str], tokenizer, view: View, max_length: int, counts: dict, limit: int | None = None
) -> Iterator[dict]:
    """Stream ``{"input_ids", "labels"}`` examples (one per session, or several for a session
    longer than ``max_length``: see :func:`~parrot.train.render.render_examples`), counting
    reads, shortenings and drops in ``counts``."""
    read = 0
    for path in paths:
        for record in read_dialogues(path):
            if limit is not None and read >= limit:
                return
            read += 1
            counts["sessions_read"] = counts.get("sessions_read", 0) + 1
            messages = view(record, f"{path} id={record['id']}")
            examples = render_examples(tokenizer, messages, max_length=max_length, counts=counts)
            if not examples:
                reason = "too_long" if any(m["role"] == "assistant" for m in messages) else "no_target"
                counts[f"dropped_{reason}"] = counts.get(f"dropped_{reason}", 0) + 1
                continue
            counts["sessions_trained"] = counts.get("sessions_trained", 0) + 1
            for r in examples:
                counts["examples"] = counts.get("examples", 0) + 1
                counts["tokens"] = counts.get("tokens", 0) + len(r.input_ids)
                counts["trainable_tokens"] = counts.get("trainable_tokens", 0) + r.trainable_tokens
                yield {"input_ids": r.input_ids, "labels": r.labels}


def build_dataset(
    paths: list[str], tokenizer, view: View, max_length: int, cache_dir: str, counts: dict, limit: int | None = None
):
    """A ``datasets.Dataset`` of rendered sessions, streamed to Arrow files in ``cache_dir``."""
    from datasets import Features, List, Value

    features = Features({"input_ids": List(Value("int32")), "labels": List(Value("int32"))})
    return stream_dataset(
        lambda: rendered_sessions(paths, tokenizer, view, max_length, counts, limit),
        features,
        cache_dir,
        f"{', '.join(paths)}: no session left to train on (max_length={max_length})",
        counts,
    )


def run_sft(cfg: SFTTrainConfig, view: View, stop_view: View | None = None) -> dict:
    """Render, train with SFTTrainer, save, write the manifest; return the manifest's numbers.

    ``stop_view`` (train-ask): the role swap with the stop turn, for the held-out pass of
    :mod:`parrot.train.heldout` (per-session loss and stop decisions, trained and base)."""

    def datasets(tokenizer, cache: str, counts: dict, eval_counts: dict):
        train_ds = build_dataset(cfg.data, tokenizer, view, cfg.max_length, cache, counts, cfg.limit)
        eval_ds = (
            build_dataset([cfg.eval_data], tokenizer, view, cfg.max_length, cache, eval_counts, cfg.eval_limit)
            if cfg.eval_data
            else None
        )
        log.info(
            "%s: %d sessions rendered as %d examples (%d longer than max_length=%d, shortened: "
            "%d history turns left out, %d messages cut; %d turns too long to train), %d trainable tokens",
            cfg.STAGE,
            counts.get("sessions_trained", 0),
            counts.get("examples", 0),
            counts.get("sessions_shortened", 0),
            cfg.max_length,
            counts.get("turns_dropped", 0),
            counts.get("messages_cut", 0),
            counts.get("turns_too_long", 0),
            counts.get("trainable_tokens", 0),
        )
        return train_ds, eval_ds

    def trainer(cfg, tokenizer, model_path, train_ds, eval_ds, counts):
        extra = ()
        if eval_ds is not None and stop_view is not None:
            from parrot.train.heldout import heldout_callback, heldout_sessions

            held, held_counts = heldout_sessions(
                cfg.eval_data, tokenizer, view, stop_view, cfg.max_length, cfg.eval_limit
            )
            extra = (heldout_callback(held, held_counts, base=getattr(cfg, "eval_base", False)),)
        return sft_trainer(cfg, tokenizer, model_path, train_ds, eval_ds, extra)

    return run_training(cfg, datasets, trainer, data_timing="render_s")


def sft_trainer(cfg: SFTTrainConfig, tokenizer, model_path: Path, train_ds, eval_ds=None, extra_callbacks=()):
    """TRL's SFTTrainer on rendered sessions, with Parrot's defaults (packing best-fit, padding-free)."""
    from trl import SFTConfig, SFTTrainer

    args = make_trl_config(SFTConfig, trl_kwargs(cfg, packing=cfg.packing, packing_strategy="bfd"))
    return trl_trainer(SFTTrainer, cfg, args, tokenizer, model_path, train_ds, eval_ds, extra_callbacks)


@writes_output
def train_chat(cfg: SFTTrainConfig) -> dict | None:
    """``parrot train-chat``: Parrot-Chat, loss on every assistant turn."""
    if relaunch_under_accelerate(cfg):
        return None
    return run_sft(cfg, chat_view)


@writes_output
def train_ask(cfg: AskTrainConfig) -> dict | None:
    """``parrot train-ask``: Parrot-Ask, loss on every real user turn (role swap)."""
    if relaunch_under_accelerate(cfg):
        return None
    system = None
    if cfg.system_prompt:
        path = Path(cfg.system_prompt)
        if not path.is_file():
            raise ParrotError(f"{path}: system prompt file not found")
        system = path.read_text(encoding="utf-8").strip().replace("{stop_marker}", STOP_MARKER)
    return run_sft(cfg, ask_view(system, cfg.add_stop), stop_view=ask_view(system, add_stop=True))
