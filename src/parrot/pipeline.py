"""``parrot pipeline``: the paper's experiment as named steps in one work directory.

A step is a stage of the stage table (:mod:`parrot.stages`), its settings and the steps it reads;
the default experiment (``experiment.yaml`` beside this module) holds every arm the paper compares,
and a config changes it by step name::

    workdir: runs/demo
    serve: gguf                               # how the trained models are served: hf, vllm, gguf
    defaults:                                 # settings for every step of a stage
      eval answer: {limit: 2, max_tokens: 128}
    steps:
      synth_parrot: {num_sessions: 12}        # merges into the step
      capo_only_ignore:                       # a new step: one more arm
        stage: capo
        dialogues: ["{parrot}"]
        strategies: [ignore]
      mtbench_base: null                      # drops a step

In a setting, ``{NAME}`` is step NAME's output, ``{NAME:dev}`` one of its side outputs (the dev
split of a prepare step; ``{NAME:gguf}``, the llama.cpp file of a training step), ``{NAME.KEY}`` one
of its settings, and ``{workdir}`` / ``{serve}`` the pipeline's own. The steps a step names with
``{NAME}`` or ``{NAME:...}`` are its inputs, so the steps run in an order where every input comes first.

A step is skipped when it is up to date, as with ``make``: its output manifest is complete, its
config hash is unchanged, and it is newer than the outputs of the steps it reads from. So an
interrupted pipeline picks up where it stopped: an interrupted step runs with ``--resume``
(synthesis, CaPO and the eval stages go on inside the stage, training from its latest
checkpoint), as does one asked for more items (``limit`` raised). Changing a step's settings runs
that step and every step that reads from it again, nothing else: a step that is new or out of date
runs with ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.backends.executor import Executor
from parrot.core.config import build_config, opt, to_dict
from parrot.core.digest import changed_outputs
from parrot.core.fingerprint import config_hash, digested, fingerprint
from parrot.core.jsonl import read_json
from parrot.core.log import format_table
from parrot.core.manifest import manifest_path, read_manifest, write_manifest
from parrot.core.outputs import selection_state
from parrot.core.yamlfile import load_yaml
from parrot.stages import STAGES, Stage

log = logging.getLogger("parrot.pipeline")

EXPERIMENT = Path(__file__).with_name("experiment.yaml")
STEP_NAME = re.compile(r"[A-Za-z_]\w*")
# {NAME}, {NAME:SIDE} (a side output) or {NAME.KEY} (a setting)
REFERENCE = re.compile(r"\{([A-Za-z_]\w*)(?:([:.])(\w+))?\}")

_MISSING = object()

# Where a step's output goes in the work directory when its settings do not say (NAME: the step's).
OUTPUT = {
    "prepare": "data/{}.jsonl",
    "synthesize": "data/{}.jsonl",
    "merge": "data/{}.jsonl",
    "filter": "data/{}.jsonl",
    "capo": "data/{}.jsonl",
    "capo select": "data/{}.jsonl",
    "stats": "{}",
    "train-ask": "models/{}",
    "train-chat": "models/{}",
    "train-dpo": "models/{}",
    "eval answer": "eval/{}.jsonl",
    "eval judge": "eval/{}.jsonl",
    "eval report": "eval/{}",
    "report": "{}",
}


def stage_named(name: str) -> Stage | None:
    """The stage table's row for ``name``; ``eval answer``, ``eval-answer`` and ``eval_answer`` alike."""
    key = re.sub(r"[-_ ]+", " ", str(name).strip())
    return next((s for s in STAGES if re.sub(r"[-_ ]+", " ", s.name) == key), None)


@dataclass(frozen=True)
class Step:
    """One step of the experiment: a stage, its settings (keys remembering where they were given)
    and the steps whose outputs it reads."""

    name: str
    stage: Stage
    settings: dict
    inputs: tuple[str, ...] = ()

    def where(self) -> str:
        """The place its section was given (``cfg.yaml:12``)."""
        return getattr(self.name, "place", "") or "config"


class _Steps:
    """The ``steps`` mapping: each step's settings are those of its stage's config."""

    @staticmethod
    def section_config(name: str, value: dict) -> type | None:
        stage = stage_named(value.get("stage", "")) if isinstance(value, dict) else None
        return stage.config if stage else None


class _Defaults:
    """The ``defaults`` mapping: a stage's settings for each of its steps."""

    @staticmethod
    def section_config(name: str, value: dict) -> type | None:
        stage = stage_named(name)
        return stage.config if stage else None


def default_steps() -> dict:
    return load_yaml(EXPERIMENT)["steps"]


@dataclass
class PipelineConfig:
    workdir: str = opt("runs/demo", "work directory: data, models, stats, eval and the report land here")
    serve: str = opt(
        "hf", "backend kind serving the trained models ({serve}): hf, vllm or gguf", choices=["hf", "vllm", "gguf"]
    )
    executor: str = opt(
        "local",
        "where the steps that call models item by item (synthesize, capo, eval answer, eval judge) run "
        "in-process models: local, or ray (replicas on a Ray cluster); a step's own setting wins",
        choices=["local", "ray"],
        hashed=False,
    )
    steps: dict = opt(default_steps, "the experiment's steps: NAME: {stage: STAGE, ...settings}", cli=False)
    defaults: dict = opt(dict, "settings for every step of a stage: STAGE: {...settings}", cli=False)
    only: list[str] = opt(list, "run only these steps (default: every step)", hashed=False)
    rerun: list[str] = opt(list, "steps to run again even if their output is complete", hashed=False)
    plan: bool = opt(False, "print each step's stage, inputs and state, then stop: nothing runs", hashed=False)

    def __post_init__(self):
        self.graph = ordered(parse_steps(self.steps))
        self._configs: dict[str, Any] = {}
        names = [s.name for s in self.graph]
        if unknown := [s for s in [*self.only, *self.rerun] if s not in names]:
            raise ParrotError(f"only/rerun: unknown step(s) {', '.join(unknown)} (steps: {', '.join(names)})")
        for stage, settings in self.defaults.items():
            if stage_named(stage) is None or not isinstance(settings, dict):
                raise ParrotError(
                    f"{getattr(stage, 'place', 'config')}: defaults: {stage!r} is not a stage "
                    f"with a mapping of settings (stages: {', '.join(s.name for s in STAGES)})"
                )
        # Every step's settings are checked now, before the first step runs (those --only leaves out
        # too): a mistyped key or a negative size in a judge step is an error at once, not after an
        # hour of synthesis and training. Keys remember where they were given: errors name the YAML
        # line or the command line. Then no two steps may write the same place.
        for step in self.graph:
            stage_config(step, self)
        check_outputs(self)

    @staticmethod
    def moved_key_hint(key: str) -> str | None:
        """A config written for the chain before named steps (``synthesize: {...}`` at top level)."""
        if stage_named(key):
            return (
                "a stage's settings go under one of its steps now (steps: {synth_parrot: {...}}), or under "
                "defaults: {STAGE: {...}} for each of its steps; `parrot pipeline --plan` lists the steps "
                "(docs/experiment.md)"
            )
        return None

    @staticmethod
    def section_config(name: str, value: dict) -> type | None:
        """The config builder merges the file's and the command line's settings for a section by
        this: ``steps.synth_parrot.asker=SPEC`` keeps the file's other asker options."""
        return {"steps": _Steps, "defaults": _Defaults}.get(name)

    def selected(self) -> list[Step]:
        return [s for s in self.graph if not self.only or s.name in self.only]

    def step(self, name: str) -> Step:
        return next(s for s in self.graph if s.name == name)


def _references(value: Any):
    """Every ``(name, kind, key)`` reference in a setting's strings."""
    if isinstance(value, str):
        yield from REFERENCE.findall(value)
    elif isinstance(value, list):
        for v in value:
            yield from _references(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _references(v)


def parse_steps(sections: dict) -> list[Step]:
    """The steps of a ``steps`` mapping (``NAME: null`` dropped), each checked: a name, a known stage,
    references to steps that exist."""
    given = {name: section for name, section in sections.items() if section is not None}
    steps = []
    for name, section in given.items():
        where = f"{getattr(name, 'place', 'config')}: steps: {name}"
        if not STEP_NAME.fullmatch(name):
            raise ParrotError(f"{where}: a step's name is letters, digits and underscores")
        if not isinstance(section, dict):
            raise ParrotError(f"{where}: expected a mapping of settings with a stage, found {section!r}")
        stage = stage_named(section.get("stage", ""))
        if stage is None or stage.name not in OUTPUT:
            known = ", ".join(s.name for s in STAGES if s.name in OUTPUT)
            raise ParrotError(f"{where}: stage: expected one of {known}, found {section.get('stage')!r}")
        settings = {k: v for k, v in section.items() if k != "stage"}
        for ref, kind, key in _references(settings):
            if ref not in given and ref not in ("workdir", "serve"):
                raise ParrotError(f"{where}: '{{{ref}{kind}{key}}}' names no step (steps: {', '.join(given)})")
        if any(ref == name and kind != "." for ref, kind, _ in _references(settings)):
            raise ParrotError(f"{where}: a step cannot read its own output ('{{{name}}}' in its settings)")
        inputs = {ref: None for ref, kind, _ in _references(settings) if ref in given and kind != "."}
        steps.append(Step(name, stage, settings, tuple(inputs)))
    return steps


def ordered(steps: list[Step]) -> list[Step]:
    """The steps in an order where each comes after the steps it reads (given order otherwise)."""
    done: dict[str, Step] = {}
    todo = list(steps)
    while todo:
        ready = [s for s in todo if all(i in done for i in s.inputs)]
        if not ready:
            raise ParrotError(f"steps: {' -> '.join(s.name for s in todo)}: the steps read each other in a cycle")
        done[ready[0].name] = ready[0]
        todo.remove(ready[0])
    return list(done.values())


def stage_defaults(cfg: PipelineConfig, stage: Stage) -> dict:
    """The ``defaults`` a config gives every step of ``stage``."""
    return next((v for k, v in cfg.defaults.items() if stage_named(k) is stage), {})


def output_of(step: Step, cfg: PipelineConfig) -> str:
    """Where a step's output goes: its ``output`` setting, else a place in the work directory by stage."""
    given = step.settings.get("output") or stage_defaults(cfg, step.stage).get("output")
    if given:  # its references resolved as in any other setting, for the steps that read it too
        return str(_resolve(str(given), step, cfg, (step.name,)))
    return str(Path(cfg.workdir) / OUTPUT[step.stage.name].format(step.name))


def _resolve(value: Any, step: Step, cfg: PipelineConfig, building: tuple[str, ...]) -> Any:
    """A setting with its ``{...}`` references replaced: a whole-string reference to a setting keeps
    that setting's type (``max_length: "{capo_dpo.max_length}"`` is an int)."""
    if isinstance(value, list):
        return [_resolve(v, step, cfg, building) for v in value]
    if isinstance(value, dict):
        out = {k: _resolve(v, step, cfg, building) for k, v in value.items()}
        if len(out) == 1 and isinstance(next(iter(out.values())), dict) and isinstance(next(iter(value.values())), str):
            # a model role given as a reference to another step's role ("{synth_parrot.assistant}"),
            # which the config builder read as that role's spec: the whole role it names
            return next(iter(out.values()))
        return out
    if not isinstance(value, str) or "{" not in value:
        return value  # the very object: YAML's bare `no` stays what it is

    def one(name: str, kind: str, key: str) -> Any:
        if not kind and name in ("workdir", "serve"):
            return getattr(cfg, name)
        other = cfg.step(name)
        if kind == ".":
            if name in building:
                raise ParrotError(f"steps: {' -> '.join(building)}: the settings name each other in a cycle")
            value = getattr(stage_config(other, cfg, (*building, step.name)), key, _MISSING)
            if value is _MISSING:
                raise ParrotError(f"{step.where()}: steps: {step.name}: {other.name} has no setting {key!r}")
            return to_dict(value)
        out = output_of(other, cfg)
        if not kind:
            return out
        sides = getattr(other.stage.config, "side_outputs", {})
        if key not in sides:
            raise ParrotError(
                f"{step.where()}: steps: {step.name}: '{{{name}:{key}}}': a {other.stage.name} step has "
                f"{'side outputs ' + ', '.join(sides) if sides else 'no side outputs'}"
            )
        return str(sides[key](out))

    whole = REFERENCE.fullmatch(value)
    if whole:
        return one(*whole.groups())
    return REFERENCE.sub(lambda m: str(one(*m.groups())), value)


def stage_config(step: Step, cfg: PipelineConfig, building: tuple[str, ...] = ()):
    """The step's config object: its output in the work directory, the stage's ``defaults``, then
    its own settings, every ``{...}`` resolved."""
    if step.name not in cfg._configs:
        first = {"output": output_of(step, cfg)}
        if issubclass(step.stage.config, Executor):
            first["executor"] = cfg.executor
        layers = [first, stage_defaults(cfg, step.stage), step.settings]
        layers = [_resolve(layer, step, cfg, (*building, step.name)) for layer in layers]
        cfg._configs[step.name] = build_config(
            step.stage.config, layers, within=step.name, extra_field=step.stage.unknown_keys
        )
    return cfg._configs[step.name]


def written_places(step: Step, cfg: PipelineConfig) -> list[Path]:
    """Where a step writes: its output and its side outputs (a dev split, a GGUF file)."""
    out = output_of(step, cfg)
    sides = getattr(step.stage.config, "side_outputs", {})
    return [Path(out).resolve(), *(Path(side(out)).resolve() for side in sides.values())]


def check_outputs(cfg: PipelineConfig) -> None:
    """No two steps write the same place, none writes inside another's output folder or over the
    work directory, and none reads what it writes: each is an error naming both steps."""
    workdir = Path(cfg.workdir).resolve()
    owner: dict[Path, Step] = {}
    for step in cfg.graph:
        where = f"{step.where()}: steps: {step.name}"
        places = written_places(step, cfg)
        out = places[0]
        if out == workdir or out in workdir.parents:
            raise ParrotError(f"{where}: its output {out} would hold the whole work directory {workdir}")
        if out in _named_paths(stage_config(step, cfg)):
            raise ParrotError(f"{where}: its output {out} is also one of its inputs")
        for place in places:
            for other_place, other in owner.items():
                if place == other_place or place in other_place.parents or other_place in place.parents:
                    raise ParrotError(
                        f"{where}: writes {place}, where step {other.name} ({other.where()}) writes {other_place}"
                    )
        owner.update({p: step for p in places})


def _named_paths(stage_cfg: Any) -> set[Path]:
    """Every path the inputs of a step's config name, whether or not it exists yet."""
    found = set()
    for _, value in digested(stage_cfg):
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item:
                found |= {Path(item).resolve(), Path(item.partition(":")[2] or item).resolve()}
    return found


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


def print_steps(workdir: Path, rows: list[dict], started: float) -> None:
    table = format_table(
        [(r["step"], r["stage"], r["status"], f"{r['seconds']:.1f}") for r in rows],
        ("step", "stage", "status", "seconds"),
    )
    print(f"\nparrot pipeline: {workdir}\n{table}\ntotal {time.monotonic() - started:.0f} s", flush=True)


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


def _with_earlier_rows(cfg: PipelineConfig, workdir: Path, rows: list[dict]) -> list[dict]:
    """This run's rows, and the last recorded row of each step it did not run (``--only``), in
    the steps' order: the pipeline's manifest always speaks of every step."""
    try:
        earlier = read_manifest(workdir / "pipeline") or {}
    except ParrotError:
        earlier = {}
    by_step = {r.get("step"): r for r in earlier.get("steps") or [] if isinstance(r, dict)}
    by_step.update({r["step"]: r for r in rows})
    order = [s.name for s in cfg.graph]
    return sorted(by_step.values(), key=lambda r: order.index(r["step"]) if r.get("step") in order else len(order))


def reports(cfg: PipelineConfig) -> list[Path]:
    """The report files the run's report steps wrote."""
    out = []
    for step in cfg.selected():
        if step.stage.name in ("report", "eval report"):
            folder = Path(stage_config(step, cfg).output)
            out += [p for p in (folder / "report.md", folder / "report.html") if p.exists()]
    return out


def pipeline(cfg: PipelineConfig) -> list[dict]:
    """Run the selected steps in order; return one summary row per step."""
    if cfg.plan:
        return print_plan(cfg)
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.monotonic()
    selected = cfg.selected()
    for i, step in enumerate(selected, 1):
        stage_cfg = stage_config(step, cfg)
        state = "rerun requested" if step.name in cfg.rerun else step_state(step, cfg, stage_cfg)
        row = {"step": step.name, "stage": step.stage.name, "status": "up to date", "seconds": 0.0}
        print(f"[{i}/{len(selected)}] {step.name} ({step.stage.name}): {state}", flush=True)
        if state != "up to date":
            resume = state in ("interrupted", "more items")  # else new or out of date: start it over
            stage_cfg = dataclasses.replace(stage_cfg, resume=resume, overwrite=not resume)
            t0 = time.monotonic()
            try:
                step.stage.run(stage_cfg)
            except ParrotError as e:  # a step left with nothing to work on stops the run here, saying why
                rows.append({**row, "status": "failed", "seconds": round(time.monotonic() - t0, 1)})
                print_steps(workdir, rows, started)
                raise ParrotError(f"stopped at {step.name}: {e}") from None
            row.update(status="done", seconds=round(time.monotonic() - t0, 1))
        rows.append(row)
    print_steps(workdir, rows, started)
    write_manifest(
        workdir / "pipeline",
        stage="pipeline",
        config=cfg,
        counts={"steps_run": sum(r["status"] == "done" for r in rows)},
        timings={"seconds": round(time.monotonic() - started, 1)},
        steps=_with_earlier_rows(cfg, workdir, rows),
    )
    if found := reports(cfg):
        print("\nreport: " + "  ".join(str(p) for p in found))
    return rows
