"""The experiment's steps: the pipeline's config, each step a row of the stage table with its
settings, the ``{...}`` references between steps resolved, every step's config built and checked
before the first runs (see :mod:`parrot.pipeline`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from parrot import ParrotError
from parrot.backends.executor import Executor
from parrot.backends.spec import read_spec
from parrot.core.config import build_config, opt, to_dict
from parrot.core.fingerprint import named_inputs
from parrot.core.yamlfile import load_yaml
from parrot.pipeline.estimate import CostSettings
from parrot.stages import STAGES, Stage

EXPERIMENT = Path(__file__).parents[1] / "experiment.yaml"
STEP_NAME = re.compile(r"[A-Za-z_]\w*")
# {NAME}, {NAME:SIDE} (a side output) or {NAME.KEY} (a setting)
REFERENCE = re.compile(r"\{([A-Za-z_]\w*)(?:([:.])(\w+))?\}")

_MISSING = object()


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
    list_configs: bool = opt(
        False, "list the configs shipped with Parrot (--config NAME), each with what it is for, then stop", hashed=False
    )
    estimate: bool = opt(
        False,
        "with --plan: each step's calls, tokens, training FLOPs, GPU hours, API cost and wall time, "
        "before it runs (and against the actual numbers of the steps already run)",
        hashed=False,
    )
    costs: CostSettings = opt(
        CostSettings,
        "what the estimate assumes: prices per role, GPU peak and MFU, throughputs",
        hashed=False,
        cli=False,
    )

    STAGE: ClassVar[str] = "pipeline"
    CONFIG_HELP: ClassVar[str] = (
        "a shipped config by name (demo, single-gpu, paper...: --list-configs) or a YAML file; the command line wins"
    )

    @staticmethod
    def config_file(value: str) -> Path:
        """``--config``: a shipped config's name or a file (:func:`parrot.pipeline.configs.config_file`)."""
        from parrot.pipeline.configs import config_file

        return config_file(value)

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
        if stage is None:
            known = ", ".join(s.name for s in STAGES)
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
    return str(Path(cfg.workdir) / step.stage.config.PLACE.format(step.name))


def _resolve(value: Any, step: Step, cfg: PipelineConfig, building: tuple[str, ...]) -> Any:
    """A setting with its ``{...}`` references replaced: a whole-string reference to a setting keeps
    that setting's type (``max_length: "{capo_dpo.max_length}"`` is an int)."""
    if isinstance(value, list):
        return [_resolve(v, step, cfg, building) for v in value]
    if isinstance(value, dict):
        out = {k: _resolve(v, step, cfg, building) for k, v in value.items()}
        if isinstance(out.get("spec"), dict) and isinstance(value["spec"], str):
            # a model role given as a reference to another step's role ("{synth_parrot.assistant}"),
            # which the config builder read as that role's spec: the whole role it names, with this
            # step's own settings of the role on top (steps.synth_selfchat.assistant.threads=2)
            return {**out["spec"], **{k: v for k, v in out.items() if k != "spec"}}
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
    for item in named_inputs(stage_cfg):
        spec = read_spec(item)
        found |= {Path(item).resolve(), Path(spec.name if spec else item).resolve()}
    return found
