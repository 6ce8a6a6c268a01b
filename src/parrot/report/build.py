"""The report's sections, each from its inputs: the numbers (for report.json), the blocks (for
report.md and report.html) and the plots. A section whose inputs were not given says so."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

from parrot import ParrotError
from parrot.core.jsonl import read_json, read_jsonl, write_text_atomic
from parrot.core.manifest import read_manifest, write_manifest
from parrot.core.staging import staged_folder
from parrot.report import plots
from parrot.report.bootstrap import paired_bootstrap, question_means
from parrot.report.render import html_page, markdown
from parrot.report.stage import ExperimentReportConfig, parse_comparison

log = logging.getLogger("parrot.report")

NOT_RUN = {"p": "Not run in this experiment."}
BENCH_TITLES = {"mt-bench": "MT-Bench", "mt-bench-pp": "MT-Bench++"}


def _f(v, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _signed(v: float | None) -> str:
    return "–" if v is None else f"{v:+.2f}"


def _section(key: str, title: str, blocks: list[dict], data) -> dict:
    return {"key": key, "title": title, "blocks": blocks or [NOT_RUN], "data": data}


# ---------------------------------------------------------------- Data


def data_section(cfg: ExperimentReportConfig, out: Path) -> dict:
    if not cfg.stats:
        return _section("data", "Data", [], None)
    from parrot.stats.report import context_plot_notes, sampling_note, table_cells, write_plots

    path = Path(cfg.stats) / "stats.json"
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), list) or "config" not in doc:
        raise ParrotError(f"{path}: not the stats.json of `parrot stats` (no datasets or config)")
    rows = doc["datasets"]
    headers, cells = table_cells(rows)
    blocks = [
        {"p": f"Datasets side by side, from `{cfg.stats}` (`parrot stats`)."},
        {"table": {"headers": headers, "rows": cells}},
    ]
    note = sampling_note(rows, SimpleNamespace(**doc["config"])).splitlines()  # the settings stats ran with
    blocks += [{"p": note[0]}, {"list": [line.removeprefix("- ") for line in note[1:] if line.strip()]}]
    made = []
    for path in write_plots(rows, out):
        made.append(path.replace(out / f"data_{path.name}"))
    notes = {"context_by_turn.png": context_plot_notes(rows)}
    for path in made:
        name = path.name.removeprefix("data_")
        blocks.append({"img": path.name, "alt": name.removesuffix(".png"), "notes": notes.get(name, [])})
    return _section("data", "Data", blocks, {"source": cfg.stats, "datasets": rows, "plots": [p.name for p in made]})


# ---------------------------------------------------------------- Simulators


def _share(v) -> str:
    return "–" if v is None else f"{v:.0%}"


def _heldout(asker: str | None) -> dict | None:
    """The trained simulator's held-out loss and the untrained base model's, from its train-ask manifest."""
    if not asker:
        return None
    losses = (read_manifest(asker) or {}).get("losses") or {}
    trained, base = losses.get("eval_loss"), losses.get("eval_loss_base")
    diff = trained - base if trained is not None and base is not None else None
    return {"trained": trained, "base": base, "difference": diff}


def simulators_section(cfg: ExperimentReportConfig, out: Path) -> dict:
    if not cfg.simulators:
        return _section("simulators", "Simulators", [], None)
    from parrot.stats.simulator import real_turn_counts, simulator_measures

    names = cfg.simulator_names or [Path(p).name.removesuffix(".jsonl") for p in cfg.simulators]
    filtered = cfg.filtered or [None] * len(cfg.simulators)
    askers = cfg.asker_models or [None] * len(cfg.simulators)
    arms = []
    real_counts = real_turn_counts(cfg.real)  # read once for every arm
    for name, path, filt, asker in zip(names, cfg.simulators, filtered, askers):
        m = simulator_measures(
            path,
            cfg.real,
            filtered=filt,
            seed=cfg.seed,
            embed_model=None if cfg.embeddings else "none",
            real_counts=real_counts,
        )
        arms.append(
            {
                "name": name,
                "sessions_file": path,
                "filtered": filt,
                "asker_model": asker,
                "measures": m,
                "heldout_loss": _heldout(asker),
            }
        )
    real_turns = next((a["measures"].get("real_turns") for a in arms if a["measures"].get("real_turns")), None)
    rows = []
    for a in arms:
        m = a["measures"]
        turns, dist = m.get("turns") or {}, m.get("turns_distance") or {}
        role, first = m.get("role_adherence") or {}, m.get("first_questions") or {}
        rows.append(
            [
                a["name"] + (f" (only {m.get('sessions')} sessions)" if m.get("too_few") else ""),
                (m.get("asker") or {}).get("mode") or "–",
                _f(m.get("sessions")),
                _share(m.get("self_ended")),
                f"{_f(turns.get('mean'))} / {_f(turns.get('median'), 1)}",
                f"{_f(dist.get('ks'), 3)} / {_f(dist.get('tv'), 3)}",
                f"{_share(role.get('share'))} of {_f(role.get('questions'))}",
                f"{_f(first.get('distinct_2'), 3)} / {_f(first.get('cosine_distance'), 3)}"
                if first.get("topic_seeded")
                else "– (seeded with real questions)",
            ]
        )
    if real_turns:
        rows.append(
            [
                "real users",
                "–",
                _f(real_turns.get("n")),
                "–",
                f"{_f(real_turns.get('mean'))} / {_f(real_turns.get('median'), 1)}",
                "–",
                "–",
                "–",
            ]
        )
    headers = [
        "asker arm",
        "asker mode",
        "sessions",
        "ended by the simulator",
        "turns/session (mean / median)",
        "length distance to real (KS / TV) ↓",
        "degenerate questions ↓",
        "first-question diversity (distinct-2 / cosine) ↑",
    ]
    blocks = [{"table": {"headers": headers, "rows": rows}}]
    note = next((a["measures"].get("note") for a in arms if a["measures"].get("note")), None)
    if note:
        blocks.append({"p": note})
    for title, key in (("How sessions ended", "end_reasons"), ("Degenerate questions by reason", "by_reason")):
        counts = [
            (
                a["name"],
                (
                    a["measures"].get(key)
                    if key == "end_reasons"
                    else (a["measures"].get("role_adherence") or {}).get(key)
                )
                or {},
            )
            for a in arms
        ]
        reasons = sorted({r for _, c in counts for r in c})
        if reasons:
            blocks.append({"p": f"{title}:"})
            blocks.append(
                {
                    "table": {
                        "headers": ["asker arm", *reasons],
                        "rows": [[n, *(_f(c.get(r, 0)) for r in reasons)] for n, c in counts],
                    }
                }
            )
    trained = [a for a in arms if a["heldout_loss"]]
    if trained:
        blocks.append(
            {"p": "Loss on held-out real user turns (the same held-out sessions and tokenizer; lower is better):"}
        )
        blocks.append(
            {
                "table": {
                    "headers": ["asker arm", "trained simulator", "untrained base (the prompted asker)", "difference"],
                    "rows": [
                        [
                            a["name"],
                            _f(a["heldout_loss"]["trained"], 3),
                            _f(a["heldout_loss"]["base"], 3),
                            _signed(a["heldout_loss"]["difference"]),
                        ]
                        for a in trained
                    ],
                }
            }
        )
    else:
        blocks.append({"p": "Held-out loss: no trained simulator among the arms (`asker_models`)."})
    plot_arms = [
        {
            "name": a["name"],
            "hist": (a["measures"].get("turns") or {}).get("hist"),
            "sessions": a["measures"].get("sessions"),
            "too_few": a["measures"].get("too_few"),
        }
        for a in arms
    ]
    png = plots.plot_session_lengths(plot_arms, real_turns, out / "simulators_session_lengths.png")
    notes = [f"{a['name']}: no sessions to plot." for a in plot_arms if not a["hist"]]
    notes += [
        f"{a['name']}: only {a['sessions']} sessions, too few to read a distribution from."
        for a in plot_arms
        if a["too_few"] and a["hist"]
    ]
    blocks.append({"img": png.name, "alt": "session lengths", "notes": notes})
    return _section("simulators", "Simulators", blocks, {"arms": arms, "real": cfg.real})


# ---------------------------------------------------------------- Training


def loss_curve(directory: str | Path, manifest: dict | None) -> list[list[float]]:
    """``[[step, loss], ...]``: the manifest's ``loss_curve``, else trainer_state.json's log
    (the run's own, or its latest checkpoint's)."""
    if manifest and manifest.get("loss_curve"):
        return [[float(s), float(v)] for s, v in manifest["loss_curve"]]
    from parrot.train.trainer import loss_curves

    d = Path(directory)
    checkpoints = [
        p for p in d.glob("checkpoint-*/trainer_state.json") if re.fullmatch(r"checkpoint-\d+", p.parent.name)
    ]
    states = [d / "trainer_state.json"] + sorted(checkpoints, key=lambda p: int(p.parent.name[11:]), reverse=True)
    for state in states:
        if state.is_file():
            history = read_json(state).get("log_history") or []
            return [[float(s), float(v)] for s, v in loss_curves(history)["loss_curve"] if s is not None]
    return []


def training_section(cfg: ExperimentReportConfig, out: Path) -> dict:
    if not cfg.training:
        return _section("training", "Training", [], None)
    models, rows = [], []
    for d in cfg.training:
        manifest = read_manifest(d)
        losses = (manifest or {}).get("losses") or {}
        curve = loss_curve(d, manifest)
        held = [[float(s), float(v)] for s, v in (manifest or {}).get("eval_curve") or []]
        models.append(
            {
                "eval_curve": held,
                "name": Path(d).name,
                "path": d,
                "stage": (manifest or {}).get("stage"),
                "losses": losses,
                "loss_curve": curve,
            }
        )
        rows.append(
            [
                Path(d).name,
                (manifest or {}).get("stage") or "no manifest",
                _f(losses.get("steps")),
                _f(losses.get("train_loss"), 3),
                _f(losses.get("last_logged_loss"), 3),
                _f(losses.get("eval_loss"), 3),
                _f(losses.get("eval_loss_base"), 3),
                str(len(curve)),
            ]
        )
    headers = [
        "model",
        "stage",
        "steps",
        "train loss (mean)",
        "last logged loss",
        "held-out loss",
        "held-out loss, base model",
        "logged points",
    ]
    png = plots.plot_losses(
        [{"name": m["name"], "points": m["loss_curve"], "eval_points": m["eval_curve"]} for m in models],
        out / "training_loss.png",
    )
    notes = [f"{m['name']}: no loss curve recorded." for m in models if not m["loss_curve"]]
    notes += [f"{m['name']}: one logged step only." for m in models if len(m["loss_curve"]) == 1]
    blocks = [{"table": {"headers": headers, "rows": rows}}, {"img": png.name, "alt": "training loss", "notes": notes}]
    return _section("training", "Training", blocks, {"models": models})


# ---------------------------------------------------------------- CaPO pairs


def pair_counts(path: str) -> dict:
    """Pairs in a CaPO pair file by strategy, by turn, and by turn and strategy."""
    by_strategy, by_turn, both = Counter(), Counter(), defaultdict(Counter)
    for _, rec in read_jsonl(path):
        meta = rec.get("meta") or {}
        strategy, turn = str(meta.get("strategy", "unknown")), meta.get("turn")
        by_strategy[strategy] += 1
        if isinstance(turn, int):
            by_turn[turn] += 1
            both[strategy][turn] += 1
    return {
        "pairs": sum(by_strategy.values()),
        "by_strategy": dict(sorted(by_strategy.items())),
        "by_turn": dict(sorted(by_turn.items())),
        "by_turn_strategy": {s: dict(sorted(c.items())) for s, c in sorted(both.items())},
    }


def capo_section(cfg: ExperimentReportConfig, out: Path) -> dict:
    if not cfg.capo:
        return _section("capo", "CaPO pairs", [], None)
    files = [{"name": Path(p).name.removesuffix(".jsonl"), "path": p, **pair_counts(p)} for p in cfg.capo]
    strategies = sorted({s for f in files for s in f["by_strategy"]})
    turns = sorted({t for f in files for t in f["by_turn"]})
    blocks = [
        {"p": "Pairs by strategy:"},
        {
            "table": {
                "headers": ["pair file", *strategies, "total"],
                "rows": [
                    [f["name"], *(str(f["by_strategy"].get(s, 0)) for s in strategies), str(f["pairs"])] for f in files
                ],
            }
        },
        {"p": "Pairs by turn of the question:"},
        {
            "table": {
                "headers": ["pair file", *(f"turn {t}" for t in turns)],
                "rows": [[f["name"], *(str(f["by_turn"].get(t, 0)) for t in turns)] for f in files],
            }
        },
    ]
    png = plots.plot_pairs_by_turn(files, out / "capo_pairs_by_turn.png")
    notes = [f"{f['name']}: no pairs." for f in files if not f["pairs"]]
    blocks.append({"img": png.name, "alt": "CaPO pairs by turn", "notes": notes})
    return _section("capo", "CaPO pairs", blocks, {"files": files})


# ---------------------------------------------------------------- benches


_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([mb])(?![a-z])")


def judge_too_small(spec: str, marked: list[str] = ()) -> str | None:
    """Why a judge is too small to rank models (None: it may be big enough): marked so, or under ~1B
    parameters by its name (``smollm2``, the embedded default, is SmolLM2-135M).

    >>> judge_too_small("smollm2"), judge_too_small("gguf:/m/SmolLM2-135M-Instruct-Q8_0.gguf")
    ('under ~1B parameters', 'under ~1B parameters')
    >>> judge_too_small("openai:gpt-4"), judge_too_small("hf:meta-llama/Llama-2-13b-chat-hf")
    (None, None)
    >>> judge_too_small("hf:my/judge", ["my/judge"])
    'marked too small to rank'
    """
    s = spec.lower()
    if any(m and m.lower() in s for m in marked):
        return "marked too small to rank"
    sizes = [float(n) * (1e6 if unit == "m" else 1e9) for n, unit in _SIZE.findall(s)]
    if sizes:
        return "under ~1B parameters" if sizes[0] < 1e9 else None
    return "under ~1B parameters" if "smollm" in s else None


def bench_of(path: str, records: list[dict]) -> tuple[str, str | None]:
    """The bench a judgment file grades and its judge spec, from its manifest (else from its records:
    more than 2 turns is MT-Bench++)."""
    from parrot.evaluate.bench import bench_name

    config = (read_manifest(path) or {}).get("config") or {}
    judge = config.get("judge")
    spec = judge.get("spec") if isinstance(judge, dict) else judge
    if not spec:
        spec = next(((r.get("judge") or [None])[0] for r in records if r.get("judge")), None)
    if config.get("bench"):
        return bench_name(str(config["bench"])), spec
    return ("mt-bench-pp" if any(int(r["turn"]) > 2 for r in records) else "mt-bench"), spec


def load_benches(cfg: ExperimentReportConfig) -> dict:
    """``{bench: {"runs": [...], "judges": [spec, ...]}}`` from the judgment files."""
    from parrot.evaluate.report import load_runs

    benches: dict = {}
    for run in load_runs(cfg.judgments):
        bench, spec = bench_of(run["source"], run["records"])
        b = benches.setdefault(bench, {"runs": [], "judges": []})
        b["runs"].append(run)
        if spec and spec not in b["judges"]:
            b["judges"].append(spec)
    return benches


def scored_records(runs: list[dict]) -> list[dict]:
    from parrot.evaluate.report import latest_judgments

    return [r for run in runs for r in latest_judgments(run["records"]) if r.get("score", -1) != -1]


def bench_section(cfg: ExperimentReportConfig, out: Path, bench: str, data: dict | None) -> dict:
    title = BENCH_TITLES.get(bench, bench)
    key = f"bench:{bench}"
    if not data:
        return _section(key, title, [], None)
    from parrot.evaluate.report import _cell, aggregate, same_score_warning

    runs = data["runs"]
    models = aggregate(runs, {})
    questions: dict = defaultdict(lambda: defaultdict(set))
    for r in scored_records(runs):
        questions[r.get("model")][int(r["turn"])].add(str(r["question_id"]))
    qcount = {m: {t: len(q) for t, q in ts.items()} for m, ts in questions.items()}
    turns = sorted({t for m in models.values() for t in m["by_turn"]})
    rows = []
    for name in sorted(models):
        m = models[name]
        rows.append(
            [
                name,
                _cell(m["overall"]),
                *(_cell(m["by_turn"].get(t)) for t in turns),
                str(m["judged"]),
                str(m["unparsable"]),
            ]
        )
    small = {spec: why for spec in data["judges"] if (why := judge_too_small(spec, cfg.small_judges))}
    blocks = []
    warning = same_score_warning(runs)
    if warning:
        blocks.append({"warn": warning})
    judges = ", ".join(f"`{j}`" for j in data["judges"]) or "unknown"
    blocks.append(
        {
            "p": f"Judge: {judges}; {len(runs)} judgment file(s). Scores 1–10, mean over questions; "
            "-1 (no rating could be read) excluded and counted; several judge runs: median [min–max]."
        }
    )
    blocks.append(
        {
            "table": {
                "headers": ["model", "overall", *(f"turn {t}" for t in turns), "judged", "-1 excluded"],
                "rows": rows,
            }
        }
    )
    png = plots.plot_scores(
        models, qcount, out / f"score_by_turn_{bench}.png", f"{title}: score by turn", cfg.min_questions
    )
    notes = [f"{m}: no scored judgments." for m in sorted(models) if models[m]["overall"] is None]
    for m in sorted(models):
        few = [t for t in turns if models[m]["by_turn"].get(t) and qcount.get(m, {}).get(t, 0) < cfg.min_questions]
        if few:
            n = min(qcount.get(m, {}).get(t, 0) for t in few)
            notes.append(
                f"{m}: turn(s) {', '.join(map(str, few))} have fewer than {cfg.min_questions} scored "
                f"questions (as few as {n})."
            )
    blocks.append({"img": png.name, "alt": f"{title} score by turn", "notes": notes})
    return _section(
        key,
        title,
        blocks,
        {
            "bench": bench,
            "judges": data["judges"],
            "too_small_judges": small,
            "warning": warning,
            "sources": [r["source"] for r in runs],
            "models": models,
            "questions_by_turn": qcount,
        },
    )


# ---------------------------------------------------------------- comparisons


def compare(cfg: ExperimentReportConfig, benches: dict) -> list[dict]:
    """One result per comparison and bench: overall and per turn intervals."""
    pairs = [parse_comparison(text) for text in cfg.compare]
    results = {}
    for bench in sorted(benches, key=_bench_order):  # each bench's scores are read once
        records = scored_records(benches[bench]["runs"])
        means = question_means(records)
        turns = {
            t: question_means([r for r in records if int(r["turn"]) == t]) for t in {int(r["turn"]) for r in records}
        }
        for a, b in pairs:
            result = {"comparison": f"{a} vs {b}", "a": a, "b": b, "bench": bench}
            missing = [m for m in (a, b) if m not in means]
            if missing:
                results[a, b, bench] = {**result, "missing": missing}
                continue
            result["overall"] = paired_bootstrap(means[a], means[b], n_boot=cfg.n_boot, seed=cfg.seed)
            by_turn = {
                t: paired_bootstrap(m[a], m[b], n_boot=cfg.n_boot, seed=cfg.seed)
                for t, m in sorted(turns.items())
                if a in m and b in m
            }
            results[a, b, bench] = {**result, "by_turn": by_turn}
    # in the order asked for: comparison by comparison, each on every bench
    return [results[a, b, bench] for a, b in pairs for bench in sorted(benches, key=_bench_order)]


def _bench_order(bench: str) -> tuple:
    return (list(BENCH_TITLES).index(bench) if bench in BENCH_TITLES else len(BENCH_TITLES), bench)


def _interval(r: dict) -> str:
    if r.get("mean_diff") is None:
        return "–"
    return f"{_signed(r['mean_diff'])} [{r['low']:+.2f}, {r['high']:+.2f}]"


def comparisons_section(cfg: ExperimentReportConfig, results: list[dict]) -> dict:
    if not cfg.compare:
        return _section("comparisons", "Comparisons", [], None)
    if not results:
        return _section("comparisons", "Comparisons", [{"p": "No judgments to compare (`judgments`)."}], results)
    rows = []
    for r in results:
        title = BENCH_TITLES.get(r["bench"], r["bench"])
        if r.get("missing"):
            rows.append([r["comparison"], title, "0", "–", f"no judgments of {', '.join(r['missing'])}"])
            continue
        o = r["overall"]
        rows.append(
            [r["comparison"], title, str(o["n"]), _interval(o), "excludes 0" if o["excludes_zero"] else "includes 0"]
        )
    blocks = [
        {
            "p": f"Mean score difference (first model minus second) over the questions both models answered, "
            f"with a paired bootstrap 95% interval ({cfg.n_boot} resamples of the questions, seed {cfg.seed}); "
            "a question's score is the mean of its judged turns."
        },
        {
            "table": {
                "headers": ["comparison", "bench", "questions", "difference [95% interval]", "interval"],
                "rows": rows,
            }
        },
    ]
    turns = sorted({t for r in results for t in r.get("by_turn", {})})
    if turns:
        blocks.append({"p": "By turn (difference [95% interval], over the questions judged at that turn):"})
        blocks.append(
            {
                "table": {
                    "headers": ["comparison", "bench", *(f"turn {t}" for t in turns)],
                    "rows": [
                        [
                            r["comparison"],
                            BENCH_TITLES.get(r["bench"], r["bench"]),
                            *(_interval(r["by_turn"][t]) if t in r["by_turn"] else "–" for t in turns),
                        ]
                        for r in results
                        if not r.get("missing")
                    ],
                }
            }
        )
    return _section("comparisons", "Comparisons", blocks, results)


def conclusions(cfg: ExperimentReportConfig, results: list[dict], bench_data: dict) -> tuple[list[dict], list[str]]:
    """The sentences: for each comparison and bench, whether the data supports a difference."""
    small = {b: d["too_small_judges"] for b, d in bench_data.items() if d}
    flat = {b: d["warning"] for b, d in bench_data.items() if d and d.get("warning")}
    sentences, blocks, supported = [], [], 0
    for r in results:
        title = BENCH_TITLES.get(r["bench"], r["bench"])
        a, b = r["a"], r["b"]
        if r.get("missing"):
            sentences.append(f"{a} vs {b} on {title}: cannot be compared, no judgments of {', '.join(r['missing'])}.")
            continue
        o = r["overall"]
        shown = f"{_signed(o['mean_diff'])} (95% interval {o['low']:+.2f} to {o['high']:+.2f}, {_questions(o['n'])})"
        if small.get(r["bench"]):
            judges = ", ".join(f"`{j}`" for j in small[r["bench"]])
            sentences.append(
                f"{a} vs {b} on {title}: {a} − {b} = {shown}; **not supported**: the judge ({judges}) is too small "
                "to rank models, so this difference means nothing."
            )
        elif flat.get(r["bench"]):
            sentences.append(f"{a} vs {b} on {title}: **not supported**: the judge gave every turn the same score.")
        elif o["excludes_zero"]:
            supported += 1
            better, worse = (a, b) if o["mean_diff"] > 0 else (b, a)
            sentences.append(
                f"{a} vs {b} on {title}: **supported**: {better} scores higher than {worse} by "
                f"{abs(o['mean_diff']):.2f} points (95% interval of {a} − {b}: {o['low']:+.2f} to {o['high']:+.2f}, "
                f"{_questions(o['n'])})."
            )
        else:
            sentences.append(
                f"{a} vs {b} on {title}: **not supported by this data**: {a} − {b} = {shown}; the interval includes 0."
            )
    judged = [b for b, d in bench_data.items() if d]
    small_benches = [b for b in judged if small.get(b)]
    if small_benches:
        specs = sorted({j for b in small_benches for j in small[b]})
        where = (
            "so no difference in this report is supported or meaningful, whatever the intervals say"
            if len(small_benches) == len(judged)
            else "so no difference on "
            + " or ".join(BENCH_TITLES.get(b, b) for b in small_benches)
            + " is supported or meaningful, whatever the intervals say"
        )
        blocks.append(
            {
                "warn": f"The judge ({', '.join(f'`{s}`' for s in specs)}) is a small local model (under ~1B "
                f"parameters, or marked too small to rank): its scores cannot rank these models, {where}. Judge "
                "again with a strong model (an API judge such as GPT-4) before reading a ranking from these numbers."
            }
        )
    if not cfg.compare:
        blocks.append({"p": "No comparisons were asked for (`compare`): nothing to support or reject."})
    elif sentences:
        blocks.append({"p": f"{supported} of {len(sentences)} comparison(s) supported by this data."})
        blocks.append({"list": sentences})
    return blocks, sentences


# ---------------------------------------------------------------- the report


def build_report(cfg: ExperimentReportConfig) -> dict:
    started = time.monotonic()
    out = Path(cfg.output)
    benches = load_benches(cfg) if cfg.judgments else {}
    # every file is made in a staging folder and moved into `out` once all are written: a full disk
    # or a read-only folder leaves the previous report whole (no partial plot, no temporary file)
    with staged_folder(out, unclaim=cfg.side_files()) as staging:
        sections = [
            data_section(cfg, staging),
            simulators_section(cfg, staging),
            training_section(cfg, staging),
            capo_section(cfg, staging),
        ]
        bench_data = {}
        for bench in sorted(set(BENCH_TITLES) | set(benches), key=_bench_order):
            s = bench_section(cfg, staging, bench, benches.get(bench))
            bench_data[bench] = s["data"]
            sections.append(s)
        results = compare(cfg, benches)
        sections.append(comparisons_section(cfg, results))
        blocks, sentences = conclusions(cfg, results, bench_data)
        run = bool(cfg.compare or any(bench_data.values()))
        sections.append(_section("support", "What the numbers support", blocks if run else [], sentences))

        intro = [
            {"p": f"Made by `parrot report` on {time.strftime('%Y-%m-%d %H:%M')}. Sections with no inputs say so."}
        ]
        md = markdown(cfg.title, sections, intro)
        write_text_atomic(staging / "report.md", md)
        write_text_atomic(staging / "report.html", html_page(cfg.title, sections, staging, intro))
        plots_made = [b["img"] for s in sections for b in s["blocks"] if "img" in b]
        doc = {
            "title": cfg.title,
            "sections": {s["key"]: s["data"] for s in sections},
            "run": {s["key"]: s["blocks"] != [NOT_RUN] for s in sections},
            "conclusions": sentences,
            "plots": plots_made,
        }
        write_text_atomic(staging / "report.json", json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    write_manifest(
        cfg,
        counts={"sections_run": sum(doc["run"].values()), "plots": len(plots_made), "comparisons": len(results)},
        timings={"seconds": round(time.monotonic() - started, 3)},
    )
    log.info("report: %s", out / "report.html")
    print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
    return doc


def _questions(n: int) -> str:
    return f"{n} question" + ("" if n == 1 else "s")
