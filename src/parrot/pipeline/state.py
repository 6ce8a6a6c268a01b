"""What a step's state is (``up to date``, ``new``, ``interrupted``, ``more items``, or why it is out
of date) and the plan that prints every step's (see docs/experiment.md, "What up to date checks")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.core.digest import changed_outputs
from parrot.core.fingerprint import config_hash, fingerprint
from parrot.core.jsonl import read_json
from parrot.core.log import format_table
from parrot.core.manifest import manifest_path
from parrot.core.outputs import selection_state
from parrot.pipeline.steps import _MISSING, PipelineConfig, Step, stage_config


def marker(stage_cfg: Any) -> Path:
    """The manifest that proves a step finished."""
    return manifest_path(stage_cfg.manifest_of())


def upstream(step: Step, cfg: PipelineConfig) -> list[Step]:
    """Every step ``step`` reads from, directly or through others."""
    seen: dict[str, Step] = {}
    todo = list(step.inputs)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen[name] = cfg.step(name)
            todo += seen[name].inputs
    return list(seen.values())


def step_state(step: Step, cfg: PipelineConfig, stage_cfg: Any | None = None) -> str:
    """``up to date``, ``new`` (never ran), ``interrupted`` (same settings, not finished) or
    ``more items`` (same settings, more questions or files selected): resume it; or why it is
    out of date (``settings changed``, ``input changed: data``, ``changed on disk: FILE``,
    ``selection changed``): start it over. What it compares is contents and settings, never
    where files sit or when they were written: a work directory copied elsewhere is up to date."""
    stage_cfg = stage_cfg or stage_config(step, cfg)
    path = marker(stage_cfg)
    if not path.exists():
        return "new"
    try:
        doc = read_json(path)
    except ParrotError:
        return "manifest unreadable"
    if not isinstance(doc, dict):
        return "manifest unreadable"
    if doc.get("config_hash") != config_hash(stage_cfg):
        return _what_changed(doc.get("fingerprint"), fingerprint(stage_cfg))
    if not doc.get("complete", True):
        return "interrupted"
    if on_disk := changed_outputs(path):
        return f"changed on disk: {on_disk[0]}"
    return {"same": "up to date", "more": "more items"}.get(selection_state(stage_cfg, doc), "selection changed")


def _what_changed(old: dict | None, new: dict) -> str:
    """``input changed: data`` when only what inputs hold changed, else ``settings changed``."""
    keys = [k for k in {**(old or {}), **new} if (old or {}).get(k, _MISSING) != new.get(k, _MISSING)]
    if old and keys and all(_is_contents(old.get(k)) and _is_contents(new.get(k)) for k in keys):
        return "input changed: " + ", ".join(keys)
    return "settings changed"


def _is_contents(value: Any) -> bool:
    """Whether a fingerprint value is what inputs hold (``sha256:...``, ``hf:sha256:...``, lists of them)."""
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(isinstance(v, str) and "sha256:" in v for v in values)


def print_plan(cfg: PipelineConfig) -> list[dict]:
    """What a run would do: each step, its stage, the steps it reads and its state. A step up to
    date now that reads a step which will run first says so: it runs again if that step's output
    comes out different."""
    states: dict[str, str] = {}
    for step in cfg.selected():
        state = step_state(step, cfg)
        ahead = [u.name for u in upstream(step, cfg) if states.get(u.name, "up to date") != "up to date"]
        states[step.name] = (
            f"up to date unless {', '.join(sorted(ahead))} changes it" if state == "up to date" and ahead else state
        )
    rows = [
        {"step": s.name, "stage": s.stage.name, "state": states[s.name], "reads": ", ".join(s.inputs) or "-"}
        for s in cfg.selected()
    ]
    print(format_table([tuple(r.values()) for r in rows], ("step", "stage", "state", "reads"), left=(0, 1, 2, 3)))
    return rows
