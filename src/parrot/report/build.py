"""``parrot report``, made in three steps: compute every section's numbers from the inputs
(:mod:`parrot.report.numbers`), present each section from its numbers (:mod:`parrot.report.sections`,
:mod:`parrot.report.verdict`), then draw the figures and write report.md, report.html and report.json
(:mod:`parrot.report.page`), all of them or none."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from parrot.core.jsonl import write_text_atomic
from parrot.core.manifest import write_manifest
from parrot.core.staging import staged_folder
from parrot.report import sections as s
from parrot.report.numbers import compute
from parrot.report.page import html_page, markdown
from parrot.report.stage import ExperimentReportConfig
from parrot.report.verdict import comparisons_section, support_section

log = logging.getLogger("parrot.report")


def present(cfg: ExperimentReportConfig, n: dict, stats) -> list[dict]:
    """Every section, in the report's order, from the numbers (:func:`parrot.report.numbers.compute`)."""
    return [
        s.data_section(n["data"], stats),
        s.simulators_section(n["simulators"]),
        s.training_section(n["training"]),
        s.capo_section(n["capo"]),
        *(s.bench_section(cfg, key, data) for key, data in n.items() if key.startswith("bench:")),
        *(s.verified_section(cfg, key, data) for key, data in n.items() if key.startswith("verified:")),
        *([s.estimate_section(cfg.estimate)] if cfg.estimate else []),
        comparisons_section(cfg, n["comparisons"]),
        support_section(cfg, n),
    ]


def build_report(cfg: ExperimentReportConfig) -> dict:
    started = time.monotonic()
    out = Path(cfg.output)
    numbers, stats = compute(cfg)
    sections = present(cfg, numbers, stats)
    # every file is made in a staging folder and moved into `out` once all are written: a full disk
    # or a read-only folder leaves the previous report whole (no partial plot, no temporary file)
    with staged_folder(out, unclaim=cfg.side_files()) as staging:
        for figure in (b for x in sections for b in x["blocks"] if "draw" in b):
            figure["draw"](staging / figure["img"])
        intro = [
            {"p": f"Made by `parrot report` on {time.strftime('%Y-%m-%d %H:%M')}. Sections with no inputs say so."}
        ]
        write_text_atomic(staging / "report.md", markdown(cfg.title, sections, intro))
        write_text_atomic(staging / "report.html", html_page(cfg.title, sections, staging, intro))
        doc = {
            "title": cfg.title,
            "sections": {x["key"]: x["data"] for x in sections},
            "run": {x["key"]: x["blocks"] != [s.NOT_RUN] for x in sections},
            "conclusions": sections[-1]["data"],
            "plots": [b["img"] for x in sections for b in x["blocks"] if "img" in b],
        }
        write_text_atomic(staging / "report.json", json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    counts = {"sections_run": sum(doc["run"].values()), "plots": len(doc["plots"])}
    write_manifest(
        cfg,
        counts={**counts, "comparisons": len(numbers["comparisons"] or [])},
        timings={"seconds": round(time.monotonic() - started, 3)},
    )
    log.info("report: %s", out / "report.html")
    print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
    return doc
