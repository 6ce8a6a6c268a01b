"""TRL's trainers with Parrot's settings, and the run every training command makes with one.

:func:`run_training` checks that the starting model's weights can be read, removes what a killed
run left in the output (:func:`leftovers_removed`), loads the tokenizer, renders the datasets into
a throw-away cache, builds the trainer (:func:`trl_trainer`: the starting model, LoRA, Parrot's
callbacks, the TRL config of :func:`trl_kwargs`), then trains, evaluates, saves and writes the
manifest (:func:`train_and_save`).

The manifest records the run's curves from the trainer's log: ``loss_curve`` (``[[step, loss],
...]``, the training loss as logged) and, when there is held-out data, ``eval_curve`` (``[[step,
eval_loss], ...]``: every evaluation, the starting model's at step 0 included when it was
measured). Unless the user sets ``logging_steps``, the loss is logged every 2% of the run's steps
(``logging_steps=0.02``, at least every step), so even a 10-step demo run draws a curve.
With ``eval_base`` (train-ask), the untrained model's held-out loss is measured once as training
begins, on the same held-out examples (:func:`base_eval_callback`), and recorded beside ``eval_loss`` as
``eval_loss_base``. train-ask also records, per held-out session, the loss and the stop decisions
of the trained and the starting model (the manifest's ``heldout``: :mod:`parrot.train.heldout`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from parrot import ParrotError
from parrot.core.checkpoint import check_weights, resolve_model_path
from parrot.core.jsonl import read_json
from parrot.core.log import format_table
from parrot.core.manifest import read_manifest, write_manifest
from parrot.core.outputs import process_rank
from parrot.core.tokens import load_tokenizer
from parrot.train.config import TrainConfig, trusts_remote_code
from parrot.train.cpu import compact_lm_head, device_settings
from parrot.train.dataset import dataset_cache
from parrot.train.launch import check_world_size, quiet_unless_main
from parrot.train.lora import lora_config
from parrot.train.save import gguf_file, remove_leftovers, resume_checkpoint, save_output, write_errors

log = logging.getLogger("parrot.train")

#: Default ``logging_steps``: a share of the run's steps (TRL rounds it up to whole steps), so a
#: run of any length logs about 50 points of its loss curve.
LOGGING_STEPS = 0.02
#: The key under which the starting model's held-out loss is kept in the trainer's log history.
BASE_KEY = "eval_loss_base"
#: What a training manifest's ``losses`` hold, each a field of :class:`TrainRun` (and a column of the report).
LOSSES = ("steps", "train_loss", "last_logged_loss", "eval_loss", BASE_KEY)

#: ``datasets(tokenizer, cache_dir, counts, eval_counts) -> (train dataset, eval dataset or None)``
Datasets = Callable[[object, str, dict, dict], tuple]
#: ``trainer(cfg, tokenizer, model_path, train dataset, eval dataset, counts) -> a TRL trainer``
MakeTrainer = Callable[..., object]


def run_training(
    cfg: TrainConfig,
    datasets: Datasets,
    trainer: MakeTrainer,
    *,
    data_timing: str,
    extra_log_keys: tuple[str, ...] = (),
) -> dict:
    """One training command from its config: the starting model's tokenizer, the datasets (in a
    private cache, removed afterwards), the trainer, then :func:`train_and_save`. The time spent
    on the data is recorded as ``data_timing``; returns the manifest's numbers."""
    t0 = time.monotonic()
    quiet_unless_main()
    model_path = resolve_model_path(cfg.model)
    check_weights(model_path)  # damaged weights: one line naming the file, not the loader's traceback
    if cfg.gguf:  # a model llama.cpp cannot take is refused now, not after training
        from parrot.backends.gguf_export import read_config

        read_config(model_path)
    tokenizer = load_tokenizer(model_path, trust_remote_code=trusts_remote_code(cfg), chat_template=True)
    counts: dict = {}
    eval_counts: dict = {}
    with leftovers_removed(Path(cfg.output)), dataset_cache(cfg) as cache:
        train_ds, eval_ds = datasets(tokenizer, cache, counts, eval_counts)
        t_data = time.monotonic()
        made = trainer(cfg, tokenizer, model_path, train_ds, eval_ds, counts)
        distributed = check_world_size(made)
        return train_and_save(
            made,
            cfg,
            tokenizer,
            model_path=model_path,
            counts=counts,
            eval_counts=eval_counts,
            timings={data_timing: round(t_data - t0, 2)},
            trl_config=made.args,
            has_eval=eval_ds is not None,
            extra_log_keys=extra_log_keys,
            distributed=distributed,
        )


@contextmanager
def leftovers_removed(out: Path) -> Iterator[None]:
    """Run the block with what a killed run left in ``out`` removed first, and what this run leaves
    removed if it fails (a checkpoint cut short by Ctrl-C or a full disk): see
    :func:`~parrot.train.save.remove_leftovers`. The main process only: it alone moves and removes
    files, and it holds the output's lock."""
    main = process_rank()[0] == 0
    if main:
        remove_leftovers(out)
    try:
        yield
    except BaseException:
        if main:
            with suppress(OSError):  # the error that stopped the run is the one to report
                remove_leftovers(out)
        raise


def trl_trainer(
    trainer_cls,
    cfg: TrainConfig,
    args,
    tokenizer,
    model_path: str | Path,
    train_ds,
    eval_ds=None,
    extra_callbacks: tuple = (),
    **extra,
):
    """TRL's ``trainer_cls`` (SFTTrainer, DPOTrainer) with the TRL config ``args``: the starting
    model, its tokenizer, the LoRA config (none: all weights train) and Parrot's callbacks (and
    ``extra_callbacks``: train-ask's held-out pass, :func:`parrot.train.heldout.heldout_callback`)."""
    held = any(getattr(c, "heldout_pass", False) for c in extra_callbacks)  # measures the base model itself
    base = base_eval_callback() if eval_ds is not None and getattr(cfg, "eval_base", False) and not held else None
    trainer = trainer_cls(
        model=str(model_path),
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=lora_config(cfg, model_path),
        # first: the time limit counts training only
        callbacks=[*([base] if base else []), *extra_callbacks, *callbacks(cfg)],
        **extra,
    )
    if base is not None:
        base.trainer = trainer
    return trainer


def trl_kwargs(cfg: TrainConfig, **parrot_defaults) -> dict:
    """Keyword arguments for SFTConfig/DPOConfig: Parrot's defaults (and this machine's: see
    :mod:`parrot.train.cpu`), then the user's pass-through keys."""
    defaults = {
        "output_dir": str(cfg.output),
        "max_length": cfg.max_length,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": LOGGING_STEPS,
        "seed": 42,
        # every trainable parameter takes part in each step (LoRA's frozen ones are not DDP's):
        # no extra search of the graph each step for unused ones
        "ddp_find_unused_parameters": False,
        **parrot_defaults,
    }
    if cfg.resume:  # --resume: from the latest checkpoint-N, if there is one
        defaults["resume_from_checkpoint"] = True
    return device_settings(defaults, cfg.trl_args)


def make_trl_config(config_cls, kwargs: dict):
    """Build the TRL config (pass-through key names were checked with the Parrot config), turning a
    bad value into a clear error."""
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ParrotError(f"{config_cls.__name__}: {e}") from None


def callbacks(cfg: TrainConfig) -> list:
    """Trainer callbacks for Parrot's own options (``time_limit``)."""
    if not cfg.time_limit:
        return []
    from transformers import TrainerCallback

    limit_s = cfg.time_limit * 60

    class TimeLimit(TrainerCallback):
        """Stops before the step that would cross the limit, judging by the slowest step so far
        (the first step, which carries one-off costs, only until there is another)."""

        def on_train_begin(self, args, state, control, **kw):
            self.start = self.last = time.monotonic()
            self.first = self.slowest = None  # seconds of the first step; of the slowest one after it

        def on_step_end(self, args, state, control, **kw):
            now = time.monotonic()
            took, self.last = now - self.last, now
            if self.first is None:
                self.first = took
            else:
                self.slowest = max(self.slowest or 0.0, took)
            if now - self.start + (self.slowest if self.slowest is not None else self.first) > limit_s:
                log.info(
                    "time limit of %g min: stopping after %d steps (%.1f min)",
                    cfg.time_limit,
                    state.global_step,
                    (now - self.start) / 60,
                )
                control.should_training_stop = True

    return [TimeLimit()]


def base_eval_callback():
    """A trainer callback that measures the starting model's held-out loss once, as training
    begins: the same evaluation pass as after training (same examples, same rendering), before
    any step. Its ``trainer`` is set once the trainer exists; ``loss`` holds the result.

    The value goes into the trainer's log history (``{"eval_loss_base": x, "step": 0}``), so every
    checkpoint carries it and a run resumed from one reuses it instead of measuring the
    checkpoint's weights. A checkpoint without it (saved with ``eval_base`` off) leaves the value
    unknown (None): the starting weights are no longer in memory.
    """
    from transformers import TrainerCallback

    class BaseEval(TrainerCallback):
        base_eval = True

        def __init__(self):
            self.trainer = None
            self.loss: float | None = None

        def on_train_begin(self, args, state, control, **kw):
            recorded = [h[BASE_KEY] for h in state.log_history if BASE_KEY in h]
            if recorded:
                self.loss = recorded[-1]
                return
            if state.global_step > 0:
                log.warning(
                    "eval_base: the checkpoint resumed from (step %d) holds no held-out loss of the "
                    "untrained model, and its weights are no longer the starting model's: not measured",
                    state.global_step,
                )
                return
            self.loss = self.trainer.evaluate()["eval_loss"]
            state.log_history.append({BASE_KEY: self.loss, "step": 0})
            log.info("held-out loss of the untrained model: %.4f", self.loss)

    return BaseEval()


def train_and_save(
    trainer,
    cfg: TrainConfig,
    tokenizer,
    *,
    model_path: Path,
    counts: dict,
    eval_counts: dict,
    timings: dict,
    trl_config,
    has_eval: bool,
    extra_log_keys: tuple[str, ...] = (),
    distributed: dict | None = None,
) -> dict:
    """Train, evaluate, save, then (main process) write the manifest and print the summary.

    ``timings`` holds what the caller measured before training; train, save and total times are
    added here. ``extra_log_keys`` are logged metrics whose last value joins the losses
    (``rewards/margins`` for DPO).
    """
    t_train0 = time.monotonic()
    # train-ask's held-out pass (parrot.train.heldout) measures the held-out examples itself, base
    # and trained: its mean loss per token is the eval loss, and the trainer's evaluation is not run
    held = next((c for c in trainer.callback_handler.callbacks if getattr(c, "heldout_pass", False)), None)
    with compact_lm_head(enabled=not trainer.args.torch_compile), write_errors(cfg.output):
        result = trainer.train(resume_from_checkpoint=resume_checkpoint(trainer.args))
        t_train = time.monotonic()
        if has_eval and held is None:
            eval_loss = trainer.evaluate()["eval_loss"]
    losses = final_losses(trainer, result)
    for key in extra_log_keys:
        logged = [h[key] for h in trainer.state.log_history if key in h]
        if logged:
            losses[key] = logged[-1]
    if held is not None:
        losses["eval_loss"] = held.trained["mean_loss"]
        if held.base is not None:
            losses[BASE_KEY] = held.base.get("mean_loss")  # None from a checkpoint saved before it was kept
    elif has_eval:
        losses["eval_loss"] = eval_loss
        base = next((c for c in trainer.callback_handler.callbacks if getattr(c, "base_eval", False)), None)
        if base is not None:
            losses[BASE_KEY] = base.loss
    curves = loss_curves(trainer.state.log_history)
    with write_errors(cfg.output):
        saved = save_output(trainer, cfg, tokenizer)
    t_end = time.monotonic()
    if eval_counts:
        counts["eval"] = eval_counts
    timings = {
        **timings,
        "train_s": round(t_train - t_train0, 2),
        "save_s": round(t_end - t_train, 2),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
    }
    if saved:  # the main process
        extra = {"heldout": held.results()} if held is not None else {}
        if cfg.gguf:
            extra["gguf"] = {
                "path": str(gguf_file(cfg)),
                "dtype": cfg.gguf_dtype,
                "bytes": gguf_file(cfg).stat().st_size,
            }
        write_manifest(
            cfg,
            inputs=[model_path],
            counts=counts,
            timings=timings,
            losses=losses,
            **curves,
            saved_as=saved,
            trl_config=_plain(trl_config.to_dict()),
            distributed=distributed or {"world_size": 1},
            **extra,
        )
        table = [(k, v) for k, v in {**counts, **losses}.items() if not isinstance(v, dict)]
        print(format_table(table, ("", cfg.STAGE)))
    out = {"counts": counts, "losses": losses, **curves, "timings": timings, "saved": saved}
    return {**out, "heldout": held.results()} if held is not None else out


def loss_curves(log_history: list[dict]) -> dict:
    """``{"loss_curve": [[step, loss], ...]}`` from the trainer's log, and ``eval_curve`` (``[[step,
    eval_loss], ...]``) when there was an evaluation (the starting model's, at step 0, included).

    >>> loss_curves([{"loss": 2.5, "step": 1}, {"loss": 2.0, "step": 2}, {"eval_loss": 2.2, "step": 2},
    ...              {"train_loss": 2.25, "step": 2}])
    {'loss_curve': [[1, 2.5], [2, 2.0]], 'eval_curve': [[2, 2.2]]}
    """
    out = {"loss_curve": [[h.get("step"), h["loss"]] for h in log_history if "loss" in h]}
    evals = [[h.get("step"), h["eval_loss"]] for h in log_history if "eval_loss" in h]
    if evals:
        out["eval_curve"] = evals
    return out


@dataclass(frozen=True)
class TrainRun:
    """What a training output's manifest says (:func:`train_run`): its losses and curves."""

    stage: str | None  # train-ask, train-chat, train-dpo; None without a manifest
    losses: dict  # as recorded: the ones below, and any other (``rewards/margins``)
    loss_curve: list[list[float]]  # [[step, loss], ...]
    eval_curve: list[list[float]]  # [[step, held-out loss], ...]
    steps: int | None = None
    train_loss: float | None = None  # the mean over the run
    last_logged_loss: float | None = None
    eval_loss: float | None = None  # on the held-out data, after training
    eval_loss_base: float | None = None  # the same, of the starting model (train-ask's eval_base)
    heldout: dict | None = None  # train-ask's per-session held-out pass (parrot.train.heldout)


def train_run(directory: str | Path) -> TrainRun:
    """The losses and curves of the training output ``directory`` (see :func:`train_and_save`)."""
    manifest = read_manifest(directory) or {}
    losses = manifest.get("losses") or {}
    return TrainRun(
        stage=manifest.get("stage"),
        losses=losses,
        loss_curve=loss_curve(directory, manifest),
        eval_curve=[[float(s), float(v)] for s, v in manifest.get("eval_curve") or []],
        **{k: losses.get(k) for k in LOSSES},
        heldout=manifest.get("heldout"),
    )


def loss_curve(directory: str | Path, manifest: dict | None) -> list[list[float]]:
    """``[[step, loss], ...]``: the manifest's ``loss_curve``, else trainer_state.json's log
    (the run's own, or its latest checkpoint's)."""
    if manifest and manifest.get("loss_curve"):
        return [[float(s), float(v)] for s, v in manifest["loss_curve"]]
    d = Path(directory)
    checkpoints = [
        p for p in d.glob("checkpoint-*/trainer_state.json") if re.fullmatch(r"checkpoint-\d+", p.parent.name)
    ]
    states = [d / "trainer_state.json"] + sorted(checkpoints, key=lambda p: int(p.parent.name[11:]), reverse=True)
    for state in states:
        if state.is_file():
            history = read_json(state).get("log_history") or []
            return [[float(s), float(v)] for s, v in loss_curves(history)["loss_curve"] if s is not None]
    return []


def final_losses(trainer, train_output) -> dict:
    """``train_loss`` (mean over the run) and the last logged ``loss``."""
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "train_loss": train_output.training_loss,
        "last_logged_loss": logged[-1] if logged else None,
        "steps": trainer.state.global_step,
    }


def _plain(d: dict) -> dict:
    return {k: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)) for k, v in d.items()}
