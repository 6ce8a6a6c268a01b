"""``parrot pipeline``: the whole method, stage after stage, in one work directory.

    prepare -> train-ask -> synthesize -> filter -> stats -> train-chat -> capo -> train-dpo
            -> eval answer -> eval judge -> eval report

Each stage is the same function its own command runs, given the paths of the work directory
plus the settings of its section in the YAML file (``synthesize: {num_sessions: 50}``), so
anything a stage's command accepts can be set here; ``{workdir}`` in a setting stands for the
work directory (``capo: {dialogues: ["{workdir}/data/parrot.jsonl", more.jsonl]}``).

A stage is skipped when it is up to date, as with ``make``: its output manifest is complete, its
config hash is unchanged, and it is newer than the outputs of the stages it reads from. So an
interrupted pipeline picks up where it stopped (synthesis, CaPO and the eval stages also resume
inside a stage), and changing a stage's settings runs that stage and everything downstream of
it again. A stage that runs again because it is out of date starts over rather than resuming.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from parrot import ParrotError
from parrot.core.config import build_config, config_hash, opt
from parrot.core.log import format_table
from parrot.core.manifest import manifest_path, write_manifest

log = logging.getLogger("parrot.pipeline")


@dataclass
class Stage:
    name: str  # section name in the YAML file
    target: str  # "module:ConfigClass:function"
    defaults: Callable[[Path], dict]  # the work directory's paths and sensible settings
    marker: Callable[[Path], Path]  # the manifest that proves the stage finished
    inputs: tuple[str, ...] = ()  # the stages whose outputs it reads
    fresh: dict | None = None  # settings that start it over instead of resuming (None: it always does)
    linked: Callable[["PipelineConfig"], dict] | None = None  # defaults taken from other stages' sections


def _w(*parts: str) -> Callable[[Path], Path]:
    return lambda wd: wd.joinpath(*parts)


def _setting(cfg: "PipelineConfig", section: str, key: str, cls: type):
    """A stage's setting as its YAML section gives it, else the config class's default."""
    given = getattr(cfg, section) or {}
    return given[key] if key in given else next(f.default for f in dataclasses.fields(cls) if f.name == key)


def _capo_links(cfg: "PipelineConfig") -> dict:
    """CaPO selects turns whose pairs fit train-dpo's max_length, counted with the tokenizer of the
    model DPO trains (train-chat's starting model)."""
    from parrot.train.config import DPOTrainConfig, SFTTrainConfig

    return {
        "max_length": _setting(cfg, "train_dpo", "max_length", DPOTrainConfig),
        "tokenizer": _setting(cfg, "train_chat", "model", SFTTrainConfig),
    }


STAGES: list[Stage] = [
    Stage(
        "prepare",
        "parrot.prepare.stage:PrepareConfig:prepare",
        lambda wd: {"source": ["sharegpt"], "output": str(wd / "data/sharegpt.jsonl")},
        lambda wd: manifest_path(wd / "data/sharegpt.jsonl"),
    ),
    Stage(
        "train_ask",
        "parrot.train.sft:AskTrainConfig:train_ask",
        lambda wd: {
            "data": [str(wd / "data/sharegpt.jsonl")],
            "output": str(wd / "models/ask"),
            "eval_data": str(wd / "data/sharegpt.dev.jsonl"),
            "add_stop": True,
        },
        lambda wd: manifest_path(wd / "models/ask"),
        inputs=("prepare",),
    ),
    Stage(
        "synthesize",
        "parrot.synthesize.stage:SynthesizeConfig:synthesize",
        lambda wd: {
            "output": str(wd / "data/synth.jsonl"),
            "seeds": str(wd / "data/sharegpt.jsonl"),
            "asker": {"spec": f"hf:{wd / 'models/ask'}"},
            "resume": True,
        },
        lambda wd: manifest_path(wd / "data/synth.jsonl"),
        inputs=("prepare", "train_ask"),
        fresh={"resume": False, "overwrite": True},
    ),
    Stage(
        "filter",
        "parrot.synthesize.filter:FilterConfig:filter_sessions",
        lambda wd: {"input": str(wd / "data/synth.jsonl"), "output": str(wd / "data/parrot.jsonl")},
        lambda wd: manifest_path(wd / "data/parrot.jsonl"),
        inputs=("synthesize",),
    ),
    Stage(
        "stats",
        "parrot.stats.stage:StatsConfig:stats",
        lambda wd: {
            "data": [str(wd / "data/sharegpt.dev.jsonl"), str(wd / "data/parrot.jsonl")],
            "names": ["ShareGPT (dev)", "Parrot (synthesized)"],
            "real": str(wd / "data/sharegpt.dev.jsonl"),
            "output": str(wd / "stats"),
        },
        lambda wd: wd / "stats" / "stats.json.manifest.json",
        inputs=("prepare", "filter"),
    ),
    Stage(
        "train_chat",
        "parrot.train.sft:SFTTrainConfig:train_chat",
        lambda wd: {"data": [str(wd / "data/parrot.jsonl")], "output": str(wd / "models/chat")},
        lambda wd: manifest_path(wd / "models/chat"),
        inputs=("filter",),
    ),
    Stage(
        "capo",
        "parrot.capo.build:CapoConfig:capo",
        lambda wd: {
            "dialogues": [str(wd / "data/parrot.jsonl")],
            "output": str(wd / "data/capo.jsonl"),
            "resume": True,
        },
        lambda wd: manifest_path(wd / "data/capo.jsonl"),
        inputs=("filter",),
        fresh={"resume": False, "overwrite": True},
        linked=_capo_links,
    ),
    Stage(
        "train_dpo",
        "parrot.train.dpo:DPOTrainConfig:train_dpo",
        lambda wd: {
            "data": [str(wd / "data/capo.jsonl")],
            "model": str(wd / "models/chat"),
            "output": str(wd / "models/dpo"),
        },
        lambda wd: manifest_path(wd / "models/dpo"),
        inputs=("train_chat", "capo"),
    ),
    Stage(
        "eval_answer",
        "parrot.evaluate.answer:AnswerConfig:answer",
        lambda wd: {
            "bench": "mt-bench-pp",
            "model": {"spec": f"hf:{wd / 'models/dpo'}"},
            "model_id": "parrot-dpo",
            "output": str(wd / "eval/answers.jsonl"),
        },
        lambda wd: manifest_path(wd / "eval/answers.jsonl"),
        inputs=("train_dpo",),
        fresh={"overwrite": True},
    ),
    Stage(
        "eval_judge",
        "parrot.evaluate.judge:JudgeConfig:judge",
        lambda wd: {
            "bench": "mt-bench-pp",
            "answers": [str(wd / "eval/answers.jsonl")],
            "output": str(wd / "eval/judgments.jsonl"),
        },
        lambda wd: manifest_path(wd / "eval/judgments.jsonl"),
        inputs=("eval_answer",),
        fresh={"overwrite": True},
    ),
    Stage(
        "eval_report",
        "parrot.evaluate.report:ReportConfig:report",
        lambda wd: {
            "bench": "mt-bench-pp",
            "judgments": [str(wd / "eval/judgments.jsonl")],
            "output": str(wd / "eval/report"),
        },
        lambda wd: wd / "eval/report/report.manifest.json",
        inputs=("eval_judge",),
    ),
]
STAGE_NAMES = [s.name for s in STAGES]


@dataclass
class PipelineConfig:
    workdir: str = opt("runs/demo", "work directory: data, models, stats and eval land here")
    stages: list[str] = opt(lambda: list(STAGE_NAMES), f"stages to run, in pipeline order ({', '.join(STAGE_NAMES)})")
    rerun: list[str] = opt(list, "stages to run again even if their output is complete", hashed=False)
    prepare: dict = opt(dict, "settings for `parrot prepare`", cli=False)
    train_ask: dict = opt(dict, "settings for `parrot train-ask`", cli=False)
    synthesize: dict = opt(dict, "settings for `parrot synthesize`", cli=False)
    filter: dict = opt(dict, "settings for `parrot filter`", cli=False)
    stats: dict = opt(dict, "settings for `parrot stats`", cli=False)
    train_chat: dict = opt(dict, "settings for `parrot train-chat`", cli=False)
    capo: dict = opt(dict, "settings for `parrot capo`", cli=False)
    train_dpo: dict = opt(dict, "settings for `parrot train-dpo`", cli=False)
    eval_answer: dict = opt(dict, "settings for `parrot eval answer`", cli=False)
    eval_judge: dict = opt(dict, "settings for `parrot eval judge`", cli=False)
    eval_report: dict = opt(dict, "settings for `parrot eval report`", cli=False)

    def __post_init__(self):
        unknown = [s for s in [*self.stages, *self.rerun] if s not in STAGE_NAMES]
        if unknown:
            raise ParrotError(f"stages: unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGE_NAMES)})")
        # Every selected stage's settings are checked now, before the first stage runs: a mistyped
        # key under eval_judge is an error at once, not after an hour of synthesis and training.
        # The sections' keys remember where they were given: errors name the YAML line or the command line.
        for stage in STAGES:
            if stage.name in self.stages:
                stage_config(stage, self)

    @staticmethod
    def section_config(name: str) -> type:
        """The config class of a stage's section: the config builder merges the YAML file's and the
        command line's settings for it by that class's fields (``synthesize.asker=SPEC`` keeps the file's
        other asker options)."""
        module, cls_name, _ = next(s for s in STAGES if s.name == name).target.split(":")
        return getattr(importlib.import_module(module), cls_name)


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


def stage_config(stage: Stage, cfg: PipelineConfig):
    """The stage's config object: work-directory defaults (and settings linked to other stages'),
    then the YAML section on top."""
    defaults = stage.defaults(Path(cfg.workdir))
    if stage.linked:
        defaults.update(stage.linked(cfg))
    layers = _with_workdir([defaults, getattr(cfg, stage.name) or {}], cfg.workdir)
    extra = "trl_args" if stage.name.startswith("train_") else None
    return build_config(PipelineConfig.section_config(stage.name), layers, within=stage.name, extra_field=extra)


def upstream(stage: Stage) -> list[Stage]:
    """Every stage ``stage`` reads from, directly or through others."""
    by_name = {s.name: s for s in STAGES}
    seen: dict[str, Stage] = {}
    todo = list(stage.inputs)
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


def stage_state(stage: Stage, stage_cfg: Any, workdir: Path) -> str:
    """``up to date``, ``new`` (never ran), ``interrupted`` (same settings, not finished: resume
    it) or why it is out of date (``settings changed``, ``<input> is newer``: start it over)."""
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
    return "up to date" if doc.get("complete", True) else "interrupted"


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
    for stage in STAGES:
        if stage.name not in cfg.stages:
            continue
        stage_cfg = stage_config(stage, cfg)
        state = "rerun requested" if stage.name in cfg.rerun else stage_state(stage, stage_cfg, workdir)
        if state == "up to date":
            log.info("%s: up to date (%s), skipped", stage.name, stage.marker(workdir))
            rows.append({"stage": stage.name, "status": "up to date", "seconds": 0.0})
            continue
        if state not in ("new", "interrupted") and stage.fresh:
            stage_cfg = dataclasses.replace(stage_cfg, **stage.fresh)  # start over, do not resume
        log.info("==== %s (%s)", stage.name, state)
        _, _, fn_name = stage.target.split(":")
        fn = getattr(importlib.import_module(stage.target.split(":")[0]), fn_name)
        t0 = time.monotonic()
        try:
            fn(stage_cfg)
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
