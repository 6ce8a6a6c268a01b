"""``parrot pipeline``: the whole method, stage after stage, in one work directory.

    prepare -> train-ask -> synthesize -> filter -> stats -> train-chat -> capo -> train-dpo
            -> eval answer -> eval judge -> eval report

Each stage is the same function its own command runs, given the paths of the work directory
plus the settings of its section in the YAML file (``synthesize: {num_sessions: 50}``), so
anything a stage's command accepts can be set here; ``{workdir}`` in a setting stands for the
work directory (``capo: {dialogues: ["{workdir}/data/parrot.jsonl", more.jsonl]}``).

A stage is skipped when it is up to date, as with ``make``: its output manifest is complete, its
config hash is unchanged, and it is newer than the outputs of the stages it reads from. So an
interrupted pipeline picks up where it stopped: an interrupted stage runs with ``--resume``
(synthesis, CaPO and the eval stages go on inside the stage, training from its latest
checkpoint), as does one asked for more items (``eval_answer: {limit: ...}``). Changing a stage's
settings runs that stage and everything downstream of it again: a stage that is new or out of
date runs with ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.core.config import build_config, opt
from parrot.core.fingerprint import config_hash
from parrot.core.log import format_table
from parrot.core.manifest import manifest_path, write_manifest
from parrot.core.outputs import same_selection
from parrot.stages import BY_NAME, Stage
from parrot.train.config import DPOTrainConfig, SFTTrainConfig

log = logging.getLogger("parrot.pipeline")


@dataclass(frozen=True)
class Step:
    """One stage of the chain, wired into the work directory."""

    name: str  # its section in the YAML file
    stage: Stage  # the row of the stage table it runs
    defaults: Callable[[Path], dict]  # the work directory's paths and sensible settings
    inputs: tuple[str, ...] = ()  # the steps whose outputs it reads
    linked: Callable[[PipelineConfig], dict] | None = None  # defaults taken from other steps' sections
    manifest: str | None = None  # the manifest that proves it finished (default: its output's)

    def marker(self, workdir: Path) -> Path:
        return workdir / self.manifest if self.manifest else manifest_path(self.defaults(workdir)["output"])


def _setting(cfg: PipelineConfig, section: str, key: str, cls: type):
    """A stage's setting as its YAML section gives it, else the config class's default."""
    given = getattr(cfg, section) or {}
    return given[key] if key in given else next(f.default for f in dataclasses.fields(cls) if f.name == key)


def _capo_links(cfg: PipelineConfig) -> dict:
    """CaPO selects turns whose pairs fit train-dpo's max_length, counted with the tokenizer of the
    model DPO trains (train-chat's starting model)."""
    return {
        "max_length": _setting(cfg, "train_dpo", "max_length", DPOTrainConfig),
        "tokenizer": _setting(cfg, "train_chat", "model", SFTTrainConfig),
    }


# fmt: off
STEPS: list[Step] = [
    Step("prepare", BY_NAME["prepare"],
         lambda wd: {"source": ["sharegpt"], "output": str(wd / "data/sharegpt.jsonl")}),
    Step("train_ask", BY_NAME["train-ask"],
         lambda wd: {"data": [str(wd / "data/sharegpt.jsonl")], "output": str(wd / "models/ask"),
                     "eval_data": str(wd / "data/sharegpt.dev.jsonl"), "add_stop": True},
         inputs=("prepare",)),
    Step("synthesize", BY_NAME["synthesize"],
         lambda wd: {"output": str(wd / "data/synth.jsonl"), "seeds": str(wd / "data/sharegpt.jsonl"),
                     "asker": {"spec": f"hf:{wd / 'models/ask'}"}},
         inputs=("prepare", "train_ask")),
    Step("filter", BY_NAME["filter"],
         lambda wd: {"input": str(wd / "data/synth.jsonl"), "output": str(wd / "data/parrot.jsonl")},
         inputs=("synthesize",)),
    Step("stats", BY_NAME["stats"],
         lambda wd: {"data": [str(wd / "data/sharegpt.dev.jsonl"), str(wd / "data/parrot.jsonl")],
                     "names": ["ShareGPT (dev)", "Parrot (synthesized)"],
                     "real": str(wd / "data/sharegpt.dev.jsonl"), "output": str(wd / "stats")},
         inputs=("prepare", "filter"), manifest="stats/stats.json.manifest.json"),
    Step("train_chat", BY_NAME["train-chat"],
         lambda wd: {"data": [str(wd / "data/parrot.jsonl")], "output": str(wd / "models/chat")},
         inputs=("filter",)),
    Step("capo", BY_NAME["capo"],
         lambda wd: {"dialogues": [str(wd / "data/parrot.jsonl")], "output": str(wd / "data/capo.jsonl")},
         inputs=("filter",), linked=_capo_links),
    Step("train_dpo", BY_NAME["train-dpo"],
         lambda wd: {"data": [str(wd / "data/capo.jsonl")], "model": str(wd / "models/chat"),
                     "output": str(wd / "models/dpo")},
         inputs=("train_chat", "capo")),
    Step("eval_answer", BY_NAME["eval answer"],
         lambda wd: {"bench": "mt-bench-pp", "model": {"spec": f"hf:{wd / 'models/dpo'}"},
                     "model_id": "parrot-dpo", "output": str(wd / "eval/answers.jsonl")},
         inputs=("train_dpo",)),
    Step("eval_judge", BY_NAME["eval judge"],
         lambda wd: {"bench": "mt-bench-pp", "answers": [str(wd / "eval/answers.jsonl")],
                     "output": str(wd / "eval/judgments.jsonl")},
         inputs=("eval_answer",)),
    Step("eval_report", BY_NAME["eval report"],
         lambda wd: {"bench": "mt-bench-pp", "judgments": [str(wd / "eval/judgments.jsonl")],
                     "output": str(wd / "eval/report")},
         inputs=("eval_judge",), manifest="eval/report/report.manifest.json"),
]
# fmt: on
STEP_NAMES = [s.name for s in STEPS]


@dataclass
class _Pipeline:
    workdir: str = opt("runs/demo", "work directory: data, models, stats and eval land here")
    stages: list[str] = opt(lambda: list(STEP_NAMES), f"stages to run, in pipeline order ({', '.join(STEP_NAMES)})")
    rerun: list[str] = opt(list, "stages to run again even if their output is complete", hashed=False)

    def __post_init__(self):
        unknown = [s for s in [*self.stages, *self.rerun] if s not in STEP_NAMES]
        if unknown:
            raise ParrotError(f"stages: unknown stage(s) {', '.join(unknown)} (known: {', '.join(STEP_NAMES)})")
        # Every selected stage's settings are checked now, before the first stage runs: a mistyped
        # key under eval_judge is an error at once, not after an hour of synthesis and training.
        # The sections' keys remember where they were given: errors name the YAML line or the command line.
        for step in STEPS:
            if step.name in self.stages:
                stage_config(step, self)

    @staticmethod
    def section_config(name: str) -> type:
        """The config class of a stage's section: the config builder merges the YAML file's and the
        command line's settings for it by that class's fields (``synthesize.asker=SPEC`` keeps the file's
        other asker options)."""
        return next(s for s in STEPS if s.name == name).stage.config


# The pipeline's settings: the three above, then one section per step holding that stage's settings.
PipelineConfig = dataclasses.make_dataclass(
    "PipelineConfig",
    [(s.name, dict, opt(dict, f"settings for `parrot {s.stage.name}`", cli=False)) for s in STEPS],
    bases=(_Pipeline,),
)
PipelineConfig.__module__ = __name__


def _with_workdir(value: Any, workdir: str) -> Any:
    """``{workdir}`` in a setting's strings replaced by the work directory (``"{workdir}/data/x.jsonl"``)."""
    if isinstance(value, str):
        # only where it occurs: another string stays the very object (YAML's bare `no` stays what it is)
        return value.replace("{workdir}", str(workdir)) if "{workdir}" in value else value
    if isinstance(value, list):
        return [_with_workdir(v, workdir) for v in value]
    if isinstance(value, dict):
        return {k: _with_workdir(v, workdir) for k, v in value.items()}
    return value


def stage_config(step: Step, cfg: PipelineConfig):
    """The step's config object: work-directory defaults (and settings linked to other steps'),
    then the YAML section on top."""
    defaults = step.defaults(Path(cfg.workdir))
    if step.linked:
        defaults.update(step.linked(cfg))
    layers = _with_workdir([defaults, getattr(cfg, step.name) or {}], cfg.workdir)
    return build_config(step.stage.config, layers, within=step.name, extra_field=step.stage.unknown_keys)


def upstream(step: Step) -> list[Step]:
    """Every step ``step`` reads from, directly or through others."""
    by_name = {s.name: s for s in STEPS}
    seen: dict[str, Step] = {}
    todo = list(step.inputs)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen[name] = by_name[name]
            todo += by_name[name].inputs
    return list(seen.values())


def read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def stage_state(stage: Step, stage_cfg: Any, workdir: Path) -> str:
    """``up to date``, ``new`` (never ran), ``interrupted`` (same settings, not finished) or
    ``more items`` (same settings, more questions or files selected): resume it; or why it is
    out of date (``settings changed``, ``<input> is newer``): start it over."""
    path = stage.marker(workdir)
    doc = read_marker(path)
    if doc is None:
        return "new"
    if doc.get("config_hash") != config_hash(stage_cfg):
        return "settings changed"
    mtime = path.stat().st_mtime_ns
    for up in upstream(stage):
        up_path = up.marker(workdir)
        if up_path.exists() and up_path.stat().st_mtime_ns > mtime:
            return f"{up.name} is newer"
    if not doc.get("complete", True):
        return "interrupted"
    return "up to date" if same_selection(stage_cfg, doc) else "more items"


def print_stages(workdir: Path, rows: list[dict], started: float) -> None:
    table = format_table(
        [(r["stage"], r["status"], f"{r['seconds']:.1f}") for r in rows], ("stage", "status", "seconds")
    )
    print(f"\nparrot pipeline: {workdir}\n{table}\ntotal {time.monotonic() - started:.0f} s")


def pipeline(cfg: PipelineConfig) -> list[dict]:
    """Run the selected stages in order; return one summary row per stage."""
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.monotonic()
    for stage in STEPS:
        if stage.name not in cfg.stages:
            continue
        stage_cfg = stage_config(stage, cfg)
        state = "rerun requested" if stage.name in cfg.rerun else stage_state(stage, stage_cfg, workdir)
        if state == "up to date":
            log.info("%s: up to date (%s), skipped", stage.name, stage.marker(workdir))
            rows.append({"stage": stage.name, "status": "up to date", "seconds": 0.0})
            continue
        resume = state in ("interrupted", "more items")  # else new or out of date: start it over
        stage_cfg = dataclasses.replace(stage_cfg, resume=resume, overwrite=not resume)
        log.info("==== %s (%s)", stage.name, state)
        t0 = time.monotonic()
        try:
            stage.stage.run(stage_cfg)
        except ParrotError as e:  # a stage left with nothing to work on stops the run here, saying why
            rows.append({"stage": stage.name, "status": "failed", "seconds": round(time.monotonic() - t0, 1)})
            print_stages(workdir, rows, started)
            raise ParrotError(f"stopped at {stage.name}: {e}") from None
        rows.append({"stage": stage.name, "status": "done", "seconds": round(time.monotonic() - t0, 1)})
    print_stages(workdir, rows, started)
    report = workdir / "eval/report/report.md"
    if report.exists():
        print(f"\n{report}:\n\n{report.read_text(encoding='utf-8')}")
    write_manifest(
        workdir / "pipeline",
        stage="pipeline",
        config=cfg,
        counts={"stages_run": sum(r["status"] == "done" for r in rows)},
        timings={"seconds": round(time.monotonic() - started, 1)},
        stages=rows,
    )
    return rows
