"""Settings shared by ``train-ask``, ``train-chat`` and ``train-dpo``.

Parrot owns a few settings (model, data, LoRA, merge, max length, launcher); every other key
(``learning_rate=1e-4``, ``num_train_epochs=2``, ``per_device_train_batch_size=8``, ``beta=0.1``)
lands in ``trl_args`` and passes straight to TRL's ``SFTConfig`` / ``DPOConfig``.

>>> from parrot.core.config import build_config
>>> cfg = build_config(SFTTrainConfig, {"data": ["d.jsonl"], "output": "out"},
...                    ["learning_rate=1e-4", "lora=true"], extra_field="trl_args")
>>> cfg.lora, cfg.trl_args
(True, {'learning_rate': 0.0001})
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.backends.gguf_export import DTYPES as GGUF_DTYPES
from parrot.core.config import SettingError, coerce, opt, strip_optional
from parrot.core.outputs import CHECKPOINT, WritesOutput

#: The accelerate configs shipped in ``parrot/accelerate/`` (by name).
ACCELERATE_CONFIGS = ("multi-gpu", "multi-cpu", "deepspeed-zero2", "deepspeed-zero3", "fsdp2")

#: The files of a saved model: what loaders read (weights or adapter, config, tokenizer, the
#: llama.cpp copy). A run keeps the previous model's until its own model is saved whole
#: (:meth:`TrainConfig.kept_until_replaced`); the new save then replaces them and removes those it
#: did not write again: a stale adapter_config.json beside new full weights would make every loader
#: apply the old adapter, and a stale model.gguf would serve the old model.
SAVED_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "model.gguf",
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)

#: What a training run writes into its output directory (--overwrite removes these, the saved
#: model's files only once the new model replaces them; any other file there is left alone): the
#: saved model, PEFT's and TRL's model card, TRL's checkpoints and logs.
TRAINED_FILES = (*SAVED_FILES, "training_args.bin", "README.md", "checkpoint-*", "runs")


def saved_model_files(out: Path) -> list[Path]:
    """The files of the model saved in ``out`` (:data:`SAVED_FILES`), those that exist."""
    return _existing(out, SAVED_FILES)


def _existing(out: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted({p for pattern in patterns for p in out.glob(pattern)}) if out.is_dir() else []


@dataclass
class TrainConfig(WritesOutput):
    """What every training command shares."""

    data: list[str] = opt(list, "input JSONL file(s)", positional=True, digest=True)
    output: str = opt(
        "", "output checkpoint directory (a manifest goes beside it: OUT.manifest.json)", flag="-o", hashed=False
    )
    model: str = opt(
        "smollm2",
        "starting model: a local checkpoint directory, hf:PATH, or smollm2 "
        "(the embedded SmolLM2-135M-Instruct, converted once)",
        digest=True,
    )
    max_length: int = opt(
        2048,
        "maximum tokens per training sequence (a longer session is split into "
        "examples at turn boundaries, each with as much history as fits; a longer "
        "preference pair has its history shortened)",
        min=16,
    )
    lora: bool = opt(False, "train a LoRA adapter instead of all weights")
    lora_r: int = opt(16, "LoRA rank", min=1)
    lora_alpha: int = opt(32, "LoRA alpha", min=1)
    lora_dropout: float = opt(
        0.0, "LoRA dropout (0, as in PEFT: on CPU its random draws cost about a quarter of each step)", min=0, below=1
    )
    lora_targets: str = opt("all-linear", "LoRA target modules (comma-separated names or all-linear)")
    lora_layers: str | None = opt(
        None,
        "LoRA on these transformer layers only, e.g. 20-29 or 0,2,4 "
        "(default: all); the backward pass stops at the lowest one, so "
        "upper layers only train faster",
    )
    merge: bool = opt(
        True,
        "with LoRA: merge the adapter into the weights and save a full checkpoint (--no-merge saves only the adapter)",
    )
    gguf: bool = opt(
        False,
        "also write model.gguf (llama.cpp) beside the checkpoint, for the gguf backend "
        "(Llama-family models; with LoRA only when merged)",
    )
    gguf_dtype: str = opt(
        "f16",
        "the matrices of model.gguf: f16, q8_0 (8-bit blocks: near-lossless, generation ~1.2x faster on CPU) or f32",
        choices=list(GGUF_DTYPES),
    )
    limit: int | None = opt(None, "use at most this many input records (quick runs)", min=1)
    time_limit: float | None = opt(
        None,
        "train for at most this many minutes: stops before the step that "
        "would cross it and saves the model trained so far (set max_steps "
        "so the learning-rate schedule ends in time)",
        above=0,
    )
    accelerate: str | None = opt(
        None,
        f"run under `accelerate launch` with this config: a name ({', '.join(ACCELERATE_CONFIGS)}) or a YAML path",
        hashed=False,
    )
    num_processes: int | None = opt(None, "with --accelerate: number of processes (GPUs)", hashed=False, min=1)
    trl_args: dict = opt(dict, "any other key=value goes to TRL's SFTConfig/DPOConfig", cli=False)
    #: The TRL config class (in ``trl``) that ``trl_args`` go to.
    trl_config: ClassVar[str] = "SFTConfig"
    #: Keys the config does not know are collected here (and passed on to TRL), not refused.
    unknown_keys: ClassVar[str] = "trl_args"
    RESUMES: ClassVar[str] = CHECKPOINT
    PLACE: ClassVar[str] = "models/{}"
    # what a pipeline step names as {NAME:gguf}: the llama.cpp file written with --gguf
    side_outputs: ClassVar[dict] = {"gguf": lambda output: Path(output) / "model.gguf"}
    RECORDS: ClassVar[str] = "weights"

    def output_files(self) -> list[Path]:
        return _existing(Path(self.output), TRAINED_FILES)

    def kept_until_replaced(self) -> list[Path]:
        """The output's files that ``--overwrite`` leaves at the start: the saved model's (weights or
        adapter, config, tokenizer, model.gguf; not the checkpoints or logs). A run that fails
        before its own model is saved whole leaves the previous one loadable; the new save replaces
        these files and removes those it did not write (:func:`parrot.train.save.save_output`)."""
        return saved_model_files(Path(self.output))

    def __post_init__(self):
        if not self.data:
            raise ParrotError("no input file given (expected one or more JSONL paths)")
        if not self.output:
            raise ParrotError("no output directory given (-o OUT)")
        if self.max_length < 16:
            raise ParrotError(f"max_length: expected at least 16 tokens, found {self.max_length}")
        if self.gguf_dtype not in GGUF_DTYPES:
            raise ParrotError(f"gguf_dtype: expected one of {', '.join(GGUF_DTYPES)}, found {self.gguf_dtype!r}")
        if self.gguf and self.lora and not self.merge:
            raise ParrotError(
                "gguf: a GGUF file needs full weights; with LoRA, merge the adapter (merge=true) or drop gguf"
            )
        if self.lora_layers is not None:
            layer_indices(self.lora_layers)  # a bad list is an error now, not after loading the model
        if self.time_limit is not None and self.time_limit <= 0:
            raise ParrotError(f"time_limit: expected a positive number of minutes, found {self.time_limit}")
        if self.trl_args:
            self._check_trl_keys()

    def _check_trl_keys(self) -> None:
        """A mistyped pass-through key is an error now, not after the model loads (or, in the
        pipeline, after the stages before this one have run): a SettingError, so the config builder
        names where the key was given (the YAML line, or the command line). A yes/no/on/off given
        for one of TRL's boolean fields is that boolean (``bf16=no``); elsewhere it stays the word
        (``save_strategy=no``)."""
        import trl

        fields = {f.name: f for f in dataclasses.fields(getattr(trl, self.trl_config))}
        unknown = sorted(set(self.trl_args) - set(fields))
        if unknown:
            ours = [f.name for f in dataclasses.fields(self) if f.init and f.name != "trl_args"]
            close = difflib.get_close_matches(unknown[0], [*ours, *fields], n=1)
            more = f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else ""
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SettingError(
                f"unknown key {unknown[0]!r}{more}: neither a Parrot training option nor a "
                f"field of TRL's {self.trl_config}{hint}",
                unknown[0],
            )
        for key, value in self.trl_args.items():
            if isinstance(value, str) and strip_optional(fields[key].type)[0] is bool:
                try:
                    self.trl_args[key] = coerce(value, bool, key)
                except ParrotError as e:
                    raise SettingError(str(e), key) from None


def layer_indices(spec: str | int) -> list[int]:
    """``"20-23,26"`` → ``[20, 21, 22, 23, 26]``."""
    out: set[int] = set()
    for part in str(spec).split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            first = last = -1
        if first < 0 or last < first:
            raise ParrotError(f"lora_layers: expected layer indices or ranges like 20-29 or 0,2,4, found {spec!r}")
        out.update(range(first, last + 1))
    return sorted(out)


def trusts_remote_code(cfg: TrainConfig) -> bool:
    """Whether the user allowed the checkpoint's own code: TRL's ``trust_remote_code=true`` or
    ``model_init_kwargs.trust_remote_code`` (off unless given)."""
    init = cfg.trl_args.get("model_init_kwargs") or {}
    return bool(cfg.trl_args.get("trust_remote_code") or (isinstance(init, dict) and init.get("trust_remote_code")))


@dataclass
class SFTTrainConfig(TrainConfig):
    """``train-chat``: loss on the assistant turns of Dialogue records."""

    eval_data: str | None = opt(None, "held-out Dialogue JSONL: its loss is measured after training", digest=True)
    eval_limit: int | None = opt(
        None,
        "use at most this many held-out records (quick runs: the held-out loss is a forward pass over every example)",
        min=1,
    )
    packing: bool = opt(
        True,
        "pack whole sessions into max_length rows (best-fit, padding-free, "
        "attention kept within each session); --no-packing pads each batch",
    )
    STAGE: ClassVar[str] = "train-chat"

    def __post_init__(self):
        super().__post_init__()
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ParrotError(f"eval_limit: expected at least 1 held-out record, found {self.eval_limit}")


@dataclass
class AskTrainConfig(SFTTrainConfig):
    """``train-ask``: the user simulator, loss on the user turns (by the role swap)."""

    system_prompt: str | None = opt(
        None, "a file with the simulator's system prompt (default: the packaged prompts/ask_system.txt)", digest=True
    )
    add_stop: bool = opt(False, "teach the simulator to end a session: a stop marker after the last real answer")
    eval_base: bool = opt(True, "also measure the untrained model's held-out loss (the prompted-simulator baseline)")
    STAGE: ClassVar[str] = "train-ask"


@dataclass
class DPOTrainConfig(TrainConfig):
    """``train-dpo``: preference pairs in TRL's conversational format (CaPO output)."""

    ref_model: str | None = opt(
        None,
        "reference model for full fine-tuning (default: the starting "
        "model); with LoRA the reference is the model with the adapter off",
        digest=True,
    )
    eval_data: str | None = opt(None, "held-out preference pairs: evaluated after training", digest=True)
    trl_config: ClassVar[str] = "DPOConfig"
    STAGE: ClassVar[str] = "train-dpo"


def accelerate_config_path(name_or_path: str) -> Path:
    """A shipped accelerate config by name (``fsdp2``) or any YAML path."""
    if name_or_path in ACCELERATE_CONFIGS:
        return Path(str(resources.files("parrot.accelerate").joinpath(f"{name_or_path}.yaml")))
    path = Path(name_or_path)
    if not path.is_file():
        raise ParrotError(
            f"{name_or_path}: not a shipped accelerate config ({', '.join(ACCELERATE_CONFIGS)}) and no such file"
        )
    return path
