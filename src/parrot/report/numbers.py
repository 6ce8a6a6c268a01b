"""What the report computes from its inputs: each section's numbers, as report.json holds them (None
for a section without inputs). Another stage's outputs are read through that stage's own reader
(``read_stats``, ``run_info`` and ``filter_run`` by way of the simulator measures, ``train_run``,
``judge_run``, ``load_runs``), never by digging in its manifest."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from parrot.core.jsonl import read_jsonl
from parrot.evaluate.verified import VERIFIED_MT
from parrot.report.bootstrap import bootstrap_cell, paired_bootstrap, question_means
from parrot.report.power import REFERENCE_EFFECTS, paired_power, two_sample
from parrot.report.stage import ExperimentReportConfig, parse_comparison

BENCH_TITLES = {"mt-bench": "MT-Bench", "mt-bench-pp": "MT-Bench++"}


def bench_order(bench: str) -> tuple:
    return (list(BENCH_TITLES).index(bench) if bench in BENCH_TITLES else len(BENCH_TITLES), bench)


def compute(cfg: ExperimentReportConfig) -> tuple[dict, object]:
    """report.json's sections, by key in the report's order (the conclusions aside: they are said of
    these), and the stats run the data section shows (its settings name the samples)."""
    from parrot.stats.files import PLOTS, read_stats

    stats = read_stats(cfg.stats) if cfg.stats else None
    data = stats and {
        "source": cfg.stats,
        "datasets": stats.datasets,
        "plots": [f"data_{p}" for p in PLOTS],
        "comparisons": compare_datasets(stats.datasets),
    }
    sections = {"data": data, "simulators": simulators(cfg, stats), "training": training(cfg), "capo": capo(cfg)}
    benches = load_benches(cfg) if cfg.judgments else {}
    for bench in sorted(set(BENCH_TITLES) | set(benches), key=bench_order):
        sections[f"bench:{bench}"] = bench_numbers(cfg, bench, benches[bench]) if bench in benches else None
    verified = load_verified(cfg)
    for bench in sorted({VERIFIED_MT} | set(verified)):
        sections[f"verified:{bench}"] = verified_numbers(cfg, verified[bench]) if bench in verified else None
    sections["comparisons"] = (compare(cfg, benches) + compare_verified(cfg, verified)) if cfg.compare else None
    return sections, stats


def simulators(cfg: ExperimentReportConfig, stats=None) -> dict | None:
    """Each asker arm's measures (:func:`parrot.stats.simulator.simulator_measures`), its
    trained simulator's held-out loss against the untrained base model's, and the human-likeness
    of its questions that the stats run measured (``stats``: its rows, by the arm's filtered file)."""
    if not cfg.simulators:
        return None
    from parrot.stats.simulator import real_turn_counts, simulator_measures

    names = cfg.simulator_names or [Path(p).name.removesuffix(".jsonl") for p in cfg.simulators]
    filtered = cfg.filtered or [None] * len(cfg.simulators)
    askers = cfg.asker_models or [None] * len(cfg.simulators)
    real_counts = real_turn_counts(cfg.real)  # read once for every arm
    arms = []
    for name, path, filt, asker in zip(names, cfg.simulators, filtered, askers):
        embed = None if cfg.embeddings else "none"
        m = simulator_measures(
            path, cfg.real, filtered=filt, seed=cfg.seed, embed_model=embed, real_counts=real_counts, n_boot=cfg.n_boot
        )
        arm = {"name": name, "sessions_file": path, "filtered": filt, "asker_model": asker, "measures": m}
        rows = [r for r in (stats.datasets if stats else []) if filt and r.get("path") == str(filt)]
        arm["human_likeness"] = rows[0].get("human_likeness") if rows else None
        arms.append({**arm, "heldout_loss": heldout(asker, n_boot=cfg.n_boot, seed=cfg.seed)})
    return {"arms": arms, "real": cfg.real, "n_boot": cfg.n_boot, "seed": cfg.seed}


def heldout(asker: str | None, *, n_boot: int = 1000, seed: int = 0) -> dict | None:
    """The trained simulator's held-out loss and the untrained base model's, from its train-ask run;
    with its per-session pass (:mod:`parrot.train.heldout`), ``per_session``: the mean over held-out
    sessions of (trained - base) per-session loss, paired bootstrap interval over sessions, and
    ``termination``: precision, recall and F1 of "stops here", trained and base, each an interval
    cell over held-out sessions."""
    if not asker:
        return None
    from parrot.train.trainer import train_run

    run = train_run(asker)
    trained, base = run.eval_loss, run.eval_loss_base
    out = {"trained": trained, "base": base, "difference": trained - base if None not in (trained, base) else None}
    held = run.heldout or {}
    passes = {m: held[m] for m in ("trained", "base") if held.get(m)}
    if len(passes) == 2:
        a, b = passes["trained"].get("loss") or {}, passes["base"].get("loss") or {}
        out["per_session"] = with_power(paired_bootstrap(a, b, n_boot=n_boot, seed=seed), "heldout_loss")
    if passes:
        out["termination"] = {m: termination(p.get("stops") or {}, n_boot, seed) for m, p in passes.items()}
        out["rule"] = held.get("rule")
    return out


def with_power(r: dict, kind: str) -> dict:
    """A paired comparison with ``power``: its minimum detectable effect at 80% power and the
    clusters (questions, conversations, sessions) the reference effect of ``kind`` would need."""
    return {**r, "power": paired_power(r.get("sd"), r["n"], REFERENCE_EFFECTS[kind])}


def compare_datasets(rows: list[dict]) -> list[dict]:
    """Every pair of the stats run's datasets, in the table's order, on each metric of
    :data:`parrot.stats.moments.METRICS`: the difference (first minus second), its 95% interval
    over sessions and its minimum detectable effect (:func:`parrot.report.power.two_sample`). A
    stats.json written before the per-session sums were kept has no such comparisons."""
    from parrot.stats.moments import METRICS, estimate

    rows = [r for r in rows if r.get("session_moments")]
    out = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            for metric in METRICS:
                ea, eb = estimate(a["session_moments"], metric), estimate(b["session_moments"], metric)
                diff = two_sample(ea, eb, REFERENCE_EFFECTS[metric])
                out.append({"a": a["name"], "b": b["name"], "metric": metric, **diff})
    return out


def termination(stops: dict, n_boot: int, seed: int) -> dict:
    """Precision, recall and F1 of a model's stop decisions (:func:`parrot.train.heldout.stop_scores`),
    each ``{"value", "low", "high", "n"}`` with held-out sessions resampled; ``turns``, ``stops``."""
    from parrot.train.heldout import stop_scores

    sessions = [stops[k] for k in sorted(stops)]
    scores = stop_scores(sessions)
    cells = {
        k: bootstrap_cell(lambda ss, k=k: stop_scores(ss)[k], sessions, n_boot=n_boot, seed=seed)
        for k in ("precision", "recall", "f1")
    }
    return {**cells, "turns": scores["turns"], "stops": scores["stops"], "sessions": len(sessions)}


def training(cfg: ExperimentReportConfig) -> dict | None:
    if not cfg.training:
        return None
    from parrot.train.trainer import train_run

    models = []
    for d in cfg.training:
        run = train_run(d)
        curves = {"eval_curve": run.eval_curve, "name": Path(d).name, "path": d, "stage": run.stage}
        models.append({**curves, "losses": run.losses, "loss_curve": run.loss_curve})
    return {"models": models}


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


def capo(cfg: ExperimentReportConfig) -> dict | None:
    if not cfg.capo:
        return None
    return {"files": [{"name": Path(p).name.removesuffix(".jsonl"), "path": p, **pair_counts(p)} for p in cfg.capo]}


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


def load_benches(cfg: ExperimentReportConfig) -> dict:
    """``{bench: {"runs", "judges", "scored"}}`` from the judgment files: each file's latest
    judgments, the judges' specs, and the scored judgments (-1 left out) of all its files."""
    from parrot.evaluate.judge import judge_run
    from parrot.evaluate.scores import load_runs

    benches: dict = {}
    for run in load_runs(cfg.judgments):
        graded = judge_run(run["source"], run["records"])
        b = benches.setdefault(graded.bench, {"runs": [], "judges": [], "scored": []})
        b["runs"].append(run)
        b["scored"] += [r for r in run["records"] if r.get("score", -1) != -1]
        if graded.judge and graded.judge not in b["judges"]:
            b["judges"].append(graded.judge)
    return benches


def bench_numbers(cfg: ExperimentReportConfig, bench: str, data: dict) -> dict:
    from parrot.evaluate.scores import aggregate, same_score_warning

    questions: dict = defaultdict(lambda: defaultdict(set))
    for r in data["scored"]:
        questions[r.get("model")][int(r["turn"])].add(str(r["question_id"]))
    return {
        "bench": bench,
        "judges": data["judges"],
        "too_small_judges": {j: why for j in data["judges"] if (why := judge_too_small(j, cfg.small_judges))},
        "warning": same_score_warning(data["runs"]),
        "sources": [r["source"] for r in data["runs"]],
        "models": aggregate(data["runs"], {}),
        "questions_by_turn": {m: {t: len(q) for t, q in ts.items()} for m, ts in questions.items()},
    }


def compare(cfg: ExperimentReportConfig, benches: dict) -> list[dict]:
    """One result per comparison and bench, in the order asked for: overall and per turn intervals."""
    pairs = [parse_comparison(text) for text in cfg.compare]
    results = {}
    for bench in sorted(benches, key=bench_order):
        records = benches[bench]["scored"]
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
            overall = paired_bootstrap(means[a], means[b], n_boot=cfg.n_boot, seed=cfg.seed)
            result["overall"] = with_power(overall, "judged")
            by_turn = {
                t: with_power(paired_bootstrap(m[a], m[b], n_boot=cfg.n_boot, seed=cfg.seed), "judged")
                for t, m in sorted(turns.items())
                if a in m and b in m
            }
            results[a, b, bench] = {**result, "by_turn": by_turn}
    return [results[a, b, bench] for a, b in pairs for bench in sorted(benches, key=bench_order)]


# ---------------------------------------------------------------- verified benches


def load_verified(cfg: ExperimentReportConfig) -> dict:
    """``{bench: [VerifiedRun, ...]}`` from the eval verify outputs, in the order given."""
    from parrot.evaluate.verify import verify_run

    out: dict = {}
    for path in cfg.verified:
        run = verify_run(path)
        out.setdefault(run.bench, []).append(run)
    return out


def verified_numbers(cfg: ExperimentReportConfig, runs: list) -> dict:
    """Accuracy by turn, retention, by kind and overall per model, with intervals over conversations."""
    from parrot.evaluate.verify import measures

    records = [r for run in runs for r in run.records]
    return {"bench": runs[0].bench, "sources": [run.source for run in runs], "models": measures(records, cfg.n_boot)}


def compare_verified(cfg: ExperimentReportConfig, verified: dict) -> list[dict]:
    """Each comparison on each verified bench: the difference in instruction-level accuracy (strict),
    paired over the conversations both models answered, overall and by turn. A program checks these,
    so no judge rule applies."""
    from parrot.evaluate.verify import conversation_accuracy

    results = []
    for a, b in (parse_comparison(text) for text in cfg.compare):
        for bench, runs in sorted(verified.items()):
            records = [r for run in runs for r in run.records]
            result = {"comparison": f"{a} vs {b}", "a": a, "b": b, "bench": bench, "verified": True}
            models = {r["model"] for r in records}
            missing = [m for m in (a, b) if m not in models]
            if missing:
                results.append({**result, "missing": missing})
                continue
            overall = paired_bootstrap(
                conversation_accuracy(records, a), conversation_accuracy(records, b), n_boot=cfg.n_boot, seed=cfg.seed
            )
            overall = with_power(overall, "verified")
            by_turn = {}
            for t in sorted({r["turn"] for r in records}):
                at = [r for r in records if r["turn"] == t]
                ca, cb = conversation_accuracy(at, a), conversation_accuracy(at, b)
                if ca and cb:
                    by_turn[t] = with_power(paired_bootstrap(ca, cb, n_boot=cfg.n_boot, seed=cfg.seed), "verified")
            results.append({**result, "overall": overall, "by_turn": by_turn})
    return results
