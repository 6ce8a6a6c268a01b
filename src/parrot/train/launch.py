"""``--accelerate``: a training command runs itself again under ``accelerate launch``."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import yaml

from parrot import ParrotError
from parrot.core.config import to_dict
from parrot.train.config import TrainConfig, accelerate_config_path

log = logging.getLogger("parrot.train")


def relaunch_under_accelerate(cfg: TrainConfig) -> bool:
    """With ``cfg.accelerate`` set, run this same command under ``accelerate launch``; True if so.

    The effective config is written to ``OUT.launch.yaml`` and the child reads it back
    (with ``accelerate`` cleared), so a library call and a command line launch alike.
    """
    if not cfg.accelerate:
        return False
    config_file = accelerate_config_path(cfg.accelerate)
    child = dataclasses.replace(cfg, accelerate=None, num_processes=None)
    data = to_dict(child)
    data.update(data.pop("trl_args", {}) or {})
    inputs = [str(p) for p in data.pop("data")]  # positional on the command line
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    launch_yaml = out.with_name(out.name + ".launch.yaml")
    # Written as it is, not through write_text_atomic: the child needs the secrets it holds
    # (hub_token=...), which Parrot's outputs have scrubbed.
    launch_yaml.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    if cfg.num_processes:
        cmd += ["--num_processes", str(cfg.num_processes)]
    cmd += ["-m", "parrot.cli", cfg.STAGE, *inputs, "--config", str(launch_yaml)]
    log.info("launching: %s", " ".join(cmd))
    try:
        rc = subprocess.call(cmd)
    finally:
        launch_yaml.unlink(missing_ok=True)  # it may hold tokens passed through (hub_token=...)
    if rc != 0:
        raise ParrotError(f"accelerate launch ({config_file}) exited with status {rc}")
    return True


def process_rank() -> tuple[int, int]:
    """This process's rank and the number of processes, as ``accelerate launch`` and torchrun set
    them (``0, 1`` outside a distributed launch). Rank 0 is the one that removes and moves files."""
    rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
    world = os.environ.get("WORLD_SIZE", os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return int(rank), int(world)
