"""``parrot pipeline``: the whole method, stage after stage, in one work directory.

    prepare -> train-ask -> synthesize -> filter -> stats -> train-chat -> capo -> train-dpo
            -> eval answer -> eval judge -> eval report

Each stage is the same function its own command runs, given the paths of the work directory
plus the settings of its section in the YAML file (``synthesize: {num_sessions: 50}``), so
anything a stage's command accepts can be set here. A stage whose output manifest is complete
and whose config hash is unchanged is skipped, so an interrupted pipeline picks up where it
stopped (synthesis and the eval stages also resume inside a run); change a stage's settings and
it (and only it) runs again.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from parrot import ParrotError
from parrot.config import build_config, config_hash, opt
from parrot.log import format_table
from parrot.manifest import manifest_path, write_manifest

log = logging.getLogger("parrot.pipeline")


@dataclass
class Stage:
    name: str                       # section name in the YAML file
    target: str                     # "module:ConfigClass:function"
    defaults: Callable[[Path], dict]  # the work directory's paths and sensible settings
    marker: Callable[[Path], Path]    # the manifest that proves the stage finished


def _w(*parts: str) -> Callable[[Path], Path]:
    return lambda wd: wd.joinpath(*parts)


STAGES: list[Stage] = [
    Stage("prepare", "parrot.prepare:PrepareConfig:prepare",
          lambda wd: {"source": ["sharegpt"], "output": str(wd / "data/sharegpt.jsonl")},
          lambda wd: manifest_path(wd / "data/sharegpt.jsonl")),
    Stage("train_ask", "parrot.train.sft:AskTrainConfig:train_ask",
          lambda wd: {"data": [str(wd / "data/sharegpt.jsonl")], "output": str(wd / "models/ask"),
                      "eval_data": str(wd / "data/sharegpt.dev.jsonl"), "add_stop": True},
          lambda wd: manifest_path(wd / "models/ask")),
    Stage("synthesize", "parrot.synthesize:SynthesizeConfig:synthesize",
          lambda wd: {"output": str(wd / "data/synth.jsonl"), "seeds": str(wd / "data/sharegpt.jsonl"),
                      "asker": {"spec": f"hf:{wd / 'models/ask'}"}, "resume": True},
          lambda wd: manifest_path(wd / "data/synth.jsonl")),
    Stage("filter", "parrot.filter:FilterConfig:filter_sessions",
          lambda wd: {"input": str(wd / "data/synth.jsonl"), "output": str(wd / "data/parrot.jsonl")},
          lambda wd: manifest_path(wd / "data/parrot.jsonl")),
    Stage("stats", "parrot.stats:StatsConfig:stats",
          lambda wd: {"data": [str(wd / "data/sharegpt.dev.jsonl"), str(wd / "data/parrot.jsonl")],
                      "names": ["ShareGPT (dev)", "Parrot (synthesized)"],
                      "real": str(wd / "data/sharegpt.dev.jsonl"), "output": str(wd / "stats")},
          lambda wd: wd / "stats" / "stats.json.manifest.json"),
    Stage("train_chat", "parrot.train.sft:SFTTrainConfig:train_chat",
          lambda wd: {"data": [str(wd / "data/parrot.jsonl")], "output": str(wd / "models/chat")},
          lambda wd: manifest_path(wd / "models/chat")),
    Stage("capo", "parrot.capo.build:CapoConfig:capo",
          lambda wd: {"dialogues": str(wd / "data/parrot.jsonl"), "output": str(wd / "data/capo.jsonl"),
                      "resume": True},
          lambda wd: manifest_path(wd / "data/capo.jsonl")),
    Stage("train_dpo", "parrot.train.dpo:DPOTrainConfig:train_dpo",
          lambda wd: {"data": [str(wd / "data/capo.jsonl")], "model": str(wd / "models/chat"),
                      "output": str(wd / "models/dpo")},
          lambda wd: manifest_path(wd / "models/dpo")),
    Stage("eval_answer", "parrot.evaluate.answer:AnswerConfig:answer",
          lambda wd: {"bench": "mt-bench-pp", "model": {"spec": f"hf:{wd / 'models/dpo'}"},
                      "model_id": "parrot-dpo", "output": str(wd / "eval/answers.jsonl")},
          lambda wd: manifest_path(wd / "eval/answers.jsonl")),
    Stage("eval_judge", "parrot.evaluate.judge:JudgeConfig:judge",
          lambda wd: {"bench": "mt-bench-pp", "answers": [str(wd / "eval/answers.jsonl")],
                      "output": str(wd / "eval/judgments.jsonl")},
          lambda wd: manifest_path(wd / "eval/judgments.jsonl")),
    Stage("eval_report", "parrot.evaluate.report:ReportConfig:report",
          lambda wd: {"bench": "mt-bench-pp", "judgments": [str(wd / "eval/judgments.jsonl")],
                      "output": str(wd / "eval/report")},
          lambda wd: wd / "eval/report/report.manifest.json"),
]
STAGE_NAMES = [s.name for s in STAGES]


@dataclass
class PipelineConfig:
    workdir: str = opt("runs/demo", "work directory: data, models, stats and eval land here")
    stages: list[str] = opt(lambda: list(STAGE_NAMES),
                            f"stages to run, in pipeline order ({', '.join(STAGE_NAMES)})")
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


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``; nested mappings merge (``asker: {temperature: 1}`` keeps the spec)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def stage_config(stage: Stage, cfg: PipelineConfig):
    """The stage's config object: work-directory defaults, then the YAML section on top."""
    module, cls_name, _ = stage.target.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    data = _merge(stage.defaults(Path(cfg.workdir)), getattr(cfg, stage.name) or {})
    extra = "trl_args" if stage.name.startswith("train_") else None
    return build_config(cls, data, where=f"pipeline: {stage.name}", extra_field=extra)


def is_done(stage: Stage, stage_cfg: Any, workdir: Path) -> bool:
    path = stage.marker(workdir)
    if not path.exists():
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(doc.get("complete", True)) and doc.get("config_hash") == config_hash(stage_cfg)


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
        if stage.name not in cfg.rerun and is_done(stage, stage_cfg, workdir):
            log.info("%s: up to date (%s), skipped", stage.name, stage.marker(workdir))
            rows.append({"stage": stage.name, "status": "up to date", "seconds": 0.0})
            continue
        log.info("==== %s", stage.name)
        _, _, fn_name = stage.target.split(":")
        fn = getattr(importlib.import_module(stage.target.split(":")[0]), fn_name)
        t0 = time.monotonic()
        fn(stage_cfg)
        rows.append({"stage": stage.name, "status": "done", "seconds": round(time.monotonic() - t0, 1)})
    table = format_table([(r["stage"], r["status"], f"{r['seconds']:.1f}") for r in rows],
                         ("stage", "status", "seconds"))
    print(f"\nparrot pipeline: {workdir}\n{table}\ntotal {time.monotonic() - started:.0f} s")
    report = workdir / "eval/report/report.md"
    if report.exists():
        print(f"\n{report}:\n\n{report.read_text(encoding='utf-8')}")
    write_manifest(workdir / "pipeline", stage="pipeline", config=cfg,
                   counts={"stages_run": sum(r["status"] == "done" for r in rows)},
                   timings={"seconds": round(time.monotonic() - started, 1)}, stages=rows)
    return rows
