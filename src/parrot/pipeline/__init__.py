"""``parrot pipeline``: the paper's experiment as named steps in one work directory.

A step is a stage of the stage table (:mod:`parrot.stages`), its settings and the steps it reads;
the default experiment (``parrot/experiment.yaml``) holds every arm the paper compares,
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

The package: :mod:`~parrot.pipeline.steps` (the config, the steps and their references, every
step checked before the first runs), :mod:`~parrot.pipeline.state` (what a step's state is, the
plan) and, here, the run.

A step is skipped when it is up to date, as with ``make``: its output manifest is complete, its
fingerprint (its settings and what its inputs hold) is unchanged, and its outputs are what the
manifest recorded (docs/experiment.md, "What up to date checks"). So an interrupted pipeline picks
up where it stopped: an interrupted step runs with ``--resume``
(synthesis, CaPO and the eval stages go on inside the stage, training from its latest
checkpoint), as does one asked for more items (``limit`` raised). Changing a step's settings runs
that step and every step that reads from it again, nothing else: a step that is new or out of date
runs with ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from parrot import ParrotError
from parrot.core.log import format_table
from parrot.core.manifest import read_manifest, record_manifest
from parrot.pipeline.state import print_plan, step_state
from parrot.pipeline.steps import PipelineConfig, stage_config, written_places

__all__ = ["PipelineConfig", "pipeline", "print_plan", "stage_config", "step_state", "written_places"]


def print_steps(workdir: Path, rows: list[dict], started: float) -> None:
    table = format_table(
        [(r["step"], r["stage"], r["status"], f"{r['seconds']:.1f}") for r in rows],
        ("step", "stage", "status", "seconds"),
    )
    print(f"\nparrot pipeline: {workdir}\n{table}\ntotal {time.monotonic() - started:.0f} s", flush=True)


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


def _seconds(cfg: PipelineConfig, rows: list[dict]) -> dict[str, float]:
    """Each step's seconds when it last ran: this run's rows over the pipeline manifest's."""
    try:
        earlier = read_manifest(Path(cfg.workdir) / "pipeline") or {}
    except ParrotError:
        earlier = {}
    found = {r["step"]: r["seconds"] for r in earlier.get("steps") or [] if r.get("status") == "done"}
    found.update({r["step"]: r["seconds"] for r in rows if r["status"] == "done"})
    return found


def reports(cfg: PipelineConfig) -> list[Path]:
    """The report files the run's report steps wrote."""
    out = []
    for step in cfg.selected():
        if step.stage.name in ("report", "eval report"):
            folder = Path(stage_config(step, cfg).output)
            out += [p for p in (folder / "report.md", folder / "report.html") if p.exists()]
    return out


def estimate_steps(cfg: PipelineConfig) -> list:
    """The estimate of every step (:mod:`parrot.pipeline.estimate`), in the steps' order."""
    from parrot.pipeline.bill import Estimator

    est = Estimator(cfg, cfg.costs)
    return [est.step(step) for step in cfg.graph]


def actual_steps(cfg: PipelineConfig, seconds: dict[str, float] | None = None) -> dict:
    """The finished steps' numbers from their manifests, by step (``seconds``: this run's rows, or
    the pipeline manifest's)."""
    from parrot.pipeline.bill import actual

    seconds = _seconds(cfg, []) if seconds is None else seconds
    found = {s.name: actual(s, cfg, seconds.get(s.name)) for s in cfg.graph}
    return {k: v for k, v in found.items() if v is not None}


def print_estimate(cfg: PipelineConfig) -> list:
    """``--plan --estimate``: the bill of every selected step, then estimate against actual where
    steps have run."""
    from parrot.pipeline.bill import bill_table, compare_rows, compare_table

    names = {s.name for s in cfg.selected()}
    bills = [b for b in estimate_steps(cfg) if b.step in names]
    print(f"\nestimate (before the run; {estimate_basis(cfg)}):")
    print(bill_table(bills))
    done = actual_steps(cfg)
    if done:
        print("\nestimate against actual (the manifests' usage and seconds):")
        print(compare_table(compare_rows(bills, done)))
    return bills


ESTIMATE_FILE = "estimate.json"


def run_estimate(cfg: PipelineConfig) -> dict | None:
    """The estimate a run is measured against: made before its first run with these settings and
    kept in ``WORKDIR/estimate.json`` (so a rerun does not count tokens again, and what the report
    compares is what was said before the steps ran). None, with a warning, when it cannot be made
    (a benchmark's data missing, say): the run itself goes on."""
    from parrot.core.config import to_dict
    from parrot.core.fingerprint import config_hash
    from parrot.core.jsonl import read_json

    path = Path(cfg.workdir) / ESTIMATE_FILE
    costs = json.dumps(to_dict(cfg.costs), sort_keys=True, default=str)  # not in the config's hash
    key = f"{config_hash(cfg)}:{hashlib.sha256(costs.encode()).hexdigest()[:16]}"
    try:
        doc = read_json(path) if path.is_file() else None
    except ParrotError:
        doc = None
    if isinstance(doc, dict) and doc.get("config_hash") == key and isinstance(doc.get("estimate"), list):
        return doc
    try:
        bills = estimate_steps(cfg)
    except (ParrotError, OSError) as e:
        print(f"no estimate for this run: {e}", flush=True)
        return None
    return {"config_hash": key, "basis": estimate_basis(cfg), "estimate": [b.to_dict() for b in bills]}


def record_estimate(cfg: PipelineConfig, doc: dict | None, seconds: dict[str, float]) -> list[dict]:
    """Estimate against actual for every step (:func:`parrot.pipeline.bill.compare_rows`), written
    into ``WORKDIR/estimate.json`` for the report; the rows."""
    from parrot.core.jsonl import write_text_atomic
    from parrot.pipeline.bill import compare_rows, from_dict

    if doc is None:
        return []
    rows = compare_rows([from_dict(b) for b in doc["estimate"]], actual_steps(cfg, seconds))
    doc = {**doc, "compare": rows}
    Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(cfg.workdir) / ESTIMATE_FILE, json.dumps(doc, indent=1) + "\n")
    return rows


def estimate_basis(cfg: PipelineConfig) -> str:
    s = cfg.costs
    return (
        f"GPU {s.gpu_peak_tflops:g} TFLOP/s peak at MFU {s.mfu:g}; CPU training {s.cpu_gflops:g} GFLOP/s; "
        f"llama.cpp on CPU {s.cpu_prefill_tok_s:g} prompt / {s.cpu_decode_tok_s:g} generated tokens/s; "
        "tokens counted with the SmolLM2 tokenizer; costs.* in the config changes these"
    )


def pipeline(cfg: PipelineConfig) -> list[dict]:
    """Run the selected steps in order; return one summary row per step."""
    if cfg.list_configs:
        from parrot.pipeline.configs import configs_table

        print(configs_table())
        return []
    if cfg.plan:
        rows = print_plan(cfg)
        if cfg.estimate:
            print_estimate(cfg)
        return rows
    if cfg.estimate:
        raise ParrotError("--estimate goes with --plan: `parrot pipeline --config C --plan --estimate`")
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.monotonic()
    selected = cfg.selected()
    estimate = run_estimate(cfg)
    for i, step in enumerate(selected, 1):
        if step.stage.name == "report":  # the report shows estimate against actual so far
            record_estimate(cfg, estimate, _seconds(cfg, rows))
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
    if compared := record_estimate(cfg, estimate, _seconds(cfg, rows)):
        from parrot.pipeline.bill import compare_table

        print("\nestimate against actual (tokens: the manifests' usage; seconds: the steps' rows):")
        print(compare_table(compared))
    record_manifest(
        workdir / "pipeline",
        stage=cfg.STAGE,
        config=cfg,
        counts={"steps_run": sum(r["status"] == "done" for r in rows)},
        timings={"seconds": round(time.monotonic() - started, 1)},
        steps=_with_earlier_rows(cfg, workdir, rows),
        estimate=compared,
    )
    if found := reports(cfg):
        print("\nreport: " + "  ".join(str(p) for p in found))
    return rows
