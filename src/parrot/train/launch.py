"""``--accelerate``: a training command runs itself again in several processes, and each process
knows whether it is the one that writes.

The parent (:func:`relaunch_under_accelerate`) holds the output's lock and starts the launch;
the processes it starts (ranks) train together; rank 0 alone writes the output (the model, the
manifest, model.gguf, the loss curves, the log's summary) and every other rank keeps quiet:

- **How the processes start.** ``accelerate launch`` with the config, and with ``--num-processes``
  on top of the config's ``num_processes``. accelerate starts several CPU processes only under
  mpirun (an ``mpirun_hostfile``); on a machine without a GPU, or with a ``MULTI_CPU`` config,
  Parrot starts them as for GPUs (torchrun, accelerate's multi-process launcher) and tells each
  to train on the CPU (``ACCELERATE_USE_CPU``), so accelerate brings up gloo in each: the same
  distributed code as on GPUs, without one.
- **The launch is checked** (:func:`check_world_size`): each rank compares the processes it
  trains with against what the command asked for, and a launch that started fewer stops with
  an error before a step is taken.
- **A rank that fails** writes its error into the launch's own folder (a temporary one, not the
  output: :func:`report_rank_failure`); the launcher stops the other ranks, and the parent
  raises one error naming the rank that failed first and its cause, not one traceback per rank
  (:func:`launch_error`). The manifest stays incomplete and the lock is released, as after any
  failed stage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import yaml

from parrot import ParrotError
from parrot.core.config import to_dict
from parrot.core.outputs import process_rank
from parrot.core.redact import redact_text
from parrot.core.yamlfile import load_yaml
from parrot.train.config import TrainConfig, accelerate_config_path

log = logging.getLogger("parrot.train")

#: Set by the parent in each rank's environment: the number of processes the command asked for.
WORLD_ENV = "PARROT_WORLD_SIZE"
#: Set by the parent in each rank's environment: the distributed type the ranks must train in.
TYPE_ENV = "PARROT_DISTRIBUTED_TYPE"
#: Distributed types accelerate runs only over GPUs (on a CPU it would train as plain DDP, silently).
GPU_ONLY = ("FSDP", "DEEPSPEED", "MEGATRON_LM", "XLA")
#: Set by the parent in each rank's environment: the folder where a failing rank leaves its error.
ERRORS_ENV = "PARROT_LAUNCH_ERRORS"


@dataclass(frozen=True)
class Launch:
    """What an accelerate config and ``--num-processes`` ask for."""

    config_file: Path
    distributed_type: str  # NO, MULTI_CPU, MULTI_GPU, FSDP, DEEPSPEED, ...
    processes: int  # in all, every machine's together
    cpu: bool  # the processes train on the CPU: a MULTI_CPU config, use_cpu, or no GPU here

    @property
    def expected_type(self) -> str:
        """The distributed type the ranks should report (several processes); on the CPU, gloo's."""
        return "MULTI_CPU" if self.cpu else self.distributed_type

    @property
    def torchrun_on_cpu(self) -> bool:
        """Several CPU processes on this machine, which accelerate itself starts only under mpirun."""
        return self.cpu and self.processes > 1


def read_launch(cfg: TrainConfig) -> Launch:
    """The launch ``cfg.accelerate`` (a shipped name or a YAML file) and ``cfg.num_processes`` ask for."""
    path = accelerate_config_path(cfg.accelerate)
    settings = load_yaml(path)
    kind = str(settings.get("distributed_type", "NO")).upper()
    processes = cfg.num_processes or int(settings.get("num_processes") or 1)
    gpu = _has_gpu()
    cpu = kind == "MULTI_CPU" or bool(settings.get("use_cpu")) or not gpu
    mpirun = bool((settings.get("mpirun_config") or {}).get("mpirun_hostfile"))
    launch = Launch(path, kind, processes, cpu and not mpirun)
    if launch.cpu and kind in GPU_ONLY:
        raise ParrotError(
            f"{cfg.accelerate}: {kind} needs GPUs (accelerate turns it on only over GPUs), and this run is on "
            f"the CPU{'' if gpu else ' (no GPU here)'}: use --accelerate multi-cpu"
        )
    return launch


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def launch_command(cfg: TrainConfig, launch: Launch, launch_yaml: Path, inputs: list[str]) -> list[str]:
    """The ``accelerate launch`` command line that runs ``cfg.STAGE`` on ``launch_yaml``."""
    cmd = [sys.executable, "-m", "parrot.train.launch", "--config_file", str(launch.config_file)]
    if cfg.num_processes:
        cmd += ["--num_processes", str(cfg.num_processes)]
    if launch.torchrun_on_cpu and launch.distributed_type in ("NO", "MULTI_CPU"):
        cmd += ["--multi_gpu"]  # accelerate's torchrun launcher; the ranks bring up gloo (ACCELERATE_USE_CPU)
    if launch.cpu:
        cmd += ["--mixed_precision", "no"]  # on a CPU, Parrot decides bf16 (parrot.train.cpu)
    cmd += ["-m", "parrot.cli", cfg.STAGE, *inputs, "--config", str(launch_yaml)]
    return cmd


def relaunch_under_accelerate(cfg: TrainConfig) -> bool:
    """With ``cfg.accelerate`` set, run this same command under ``accelerate launch``; True if so.

    The effective config is written to ``OUT.launch.yaml`` and the ranks read it back (with
    ``accelerate`` cleared), so a library call and a command line launch alike.
    """
    if not cfg.accelerate:
        return False
    launch = read_launch(cfg)
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
    cmd = launch_command(cfg, launch, launch_yaml, inputs)
    errors = Path(tempfile.mkdtemp(prefix="parrot-launch-"))
    env = {**os.environ, WORLD_ENV: str(launch.processes), TYPE_ENV: launch.expected_type, ERRORS_ENV: str(errors)}
    if launch.cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    log.info(
        "launching %d process%s (%s, %s): %s",
        launch.processes,
        "" if launch.processes == 1 else "es",
        launch.distributed_type,
        launch.config_file.name,
        " ".join(cmd),
    )
    try:
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            raise launch_error(errors, launch, rc)
    finally:
        launch_yaml.unlink(missing_ok=True)  # it may hold tokens passed through (hub_token=...)
        shutil.rmtree(errors, ignore_errors=True)
    return True


def launcher(argv: list[str]) -> int:
    """``accelerate launch`` (its arguments), without its own report of a failed launch: the
    ranks report their errors (:func:`report_rank_failure`); this adds one line for each rank
    that stopped without a word (killed, a crash in native code), for :func:`launch_error`."""
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ["LOGLEVEL"] = "CRITICAL"  # torchrun's notices of each rank it stops, and why
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        launch_command(launch_command_parser().parse_args(argv))
    except ChildFailedError as e:
        folder = Path(os.environ.get(ERRORS_ENV, "."))
        for rank, failure in e.failures.items():
            path = folder / f"rank-{rank}.json"
            if folder.is_dir() and not path.exists():
                cause = failure.signal_name() if failure.exitcode < 0 else f"exit status {failure.exitcode}"
                record = {"rank": rank, "time": failure.timestamp, "error": f"stopped ({cause})"}
                path.write_text(json.dumps(record), encoding="utf-8")
        return 1
    return 0


def launch_error(errors: Path, launch: Launch, rc: int) -> ParrotError:
    """One error for a launch that failed: the first rank that failed, and why (the others were
    stopped because of it, or failed waiting for it)."""
    failures = []
    for path in errors.glob("rank-*.json"):
        try:
            failures.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    where = f"accelerate launch ({launch.config_file.name}, {launch.processes} processes)"
    if not failures:
        return ParrotError(f"{where} exited with status {rc}")
    # the launcher stops the other ranks with SIGTERM once one has failed: never the cause
    first = min(failures, key=lambda f: (f["error"] == "stopped (SIGTERM)", f["time"]))
    for failure in sorted(failures, key=lambda f: f["rank"]):
        if failure.get("traceback"):
            log.debug("rank %d: %s", failure["rank"], failure["traceback"])
    others = len(failures) - 1
    also = f" (the launch stopped {others} other rank{'s' if others > 1 else ''} with it)" if others else ""
    return ParrotError(f"{where}: rank {first['rank']} failed: {first['error']}{also}")


def report_rank_failure(error: BaseException, message: str | None = None) -> bool:
    """In a rank started by :func:`relaunch_under_accelerate`: leave ``error`` (``message``, else
    its type and first line; its traceback at debug level) for the parent to report, and say so
    (True); elsewhere False."""
    folder = os.environ.get(ERRORS_ENV)
    if not folder or not Path(folder).is_dir():
        return False
    rank = process_rank()[0]
    text = message or f"{type(error).__name__}: {str(error).strip()}".rstrip(": ")
    record = {
        "rank": rank,
        "time": time.time(),
        "error": redact_text(text.splitlines()[0] if text else ""),
        "traceback": redact_text("".join(traceback.format_exception(error))),
    }
    (Path(folder) / f"rank-{rank}.json").write_text(json.dumps(record), encoding="utf-8")
    return True


def check_world_size(trainer) -> dict:
    """The processes this run trains with, checked against what the command asked for; returns
    what the manifest records (``world_size``, the distributed type and backend, the global batch)."""
    acc = trainer.accelerator
    state = acc.state
    world = acc.num_processes
    asked = int(os.environ.get(WORLD_ENV, "0") or 0)
    if asked and world < asked:
        raise ParrotError(
            f"asked for {asked} processes, but this one trains in a world of {world} "
            f"({state.distributed_type.value}): the launch started fewer than asked; nothing was trained"
        )
    kind = os.environ.get(TYPE_ENV)
    if asked > 1 and kind and state.distributed_type.value != kind:
        raise ParrotError(
            f"asked for {kind} training, but accelerate set this run up as {state.distributed_type.value}; "
            "nothing was trained"
        )
    args = trainer.args
    batch = args.per_device_train_batch_size * world * args.gradient_accumulation_steps
    out = {
        "world_size": world,
        "type": state.distributed_type.value,
        "backend": getattr(state, "backend", None),
        "global_batch": batch,
    }
    if acc.is_main_process:
        log.info(
            "training in %d process%s (%s%s): global batch %d = %d per device x %d x %d accumulation",
            world,
            "" if world == 1 else "es",
            out["type"],
            f", {out['backend']}" if out["backend"] else "",
            batch,
            args.per_device_train_batch_size,
            world,
            args.gradient_accumulation_steps,
        )
    return out


def quiet_unless_main() -> None:
    """In a rank other than 0: only warnings and errors (rank 0 says what all ranks do), and no
    progress bars (the datasets each rank renders, the weights each loads)."""
    if process_rank()[0] == 0:
        return
    import datasets
    import transformers

    logging.getLogger("parrot").setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


if __name__ == "__main__":
    raise SystemExit(launcher(sys.argv[1:]))
