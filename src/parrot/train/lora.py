"""LoRA: the PEFT config of a training run (``lora``, ``lora_r``, ``lora_targets``, ``lora_layers``...)."""

from __future__ import annotations

from pathlib import Path

from parrot.train.config import TrainConfig, layer_indices, trusts_remote_code


def lora_config(cfg: TrainConfig, model_path: str | Path):
    """PEFT's ``LoraConfig`` for ``cfg``; None without ``lora`` (all weights train)."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    layers = layer_indices(cfg.lora_layers) if cfg.lora_layers is not None else None
    if cfg.lora_targets != "all-linear":
        targets = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    elif layers is not None:  # PEFT takes a layer list only with explicit module names
        targets = linear_module_names(model_path, cfg)
    else:
        targets = "all-linear"
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )


def linear_module_names(model_path: str | Path, cfg: TrainConfig) -> list[str]:
    """The names of every linear layer but the output head (what PEFT's ``all-linear`` means),
    read from a weightless copy of the model on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    remote = trusts_remote_code(cfg)
    config = AutoConfig.from_pretrained(str(model_path), trust_remote_code=remote)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=remote)
    head = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head
        }
    )
