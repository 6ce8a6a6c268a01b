"""The report's sections, each presented from its numbers (:mod:`parrot.report.numbers`) by a pure
function: its title, its blocks (for report.md and report.html, :mod:`parrot.report.page`) and
a figure's block has ``draw``, which writes its plot given a path. A section without inputs says so."""

from __future__ import annotations

from functools import partial

from parrot.core.figures import plot_scores
from parrot.core.markdown import cell
from parrot.report import plots
from parrot.report.numbers import BENCH_TITLES
from parrot.report.power import ROUGH_UNDER

NOT_RUN = {"p": "Not run in this experiment."}


def section(key: str, title: str, blocks: list[dict], data) -> dict:
    return {"key": key, "title": title, "blocks": blocks or [NOT_RUN], "data": data}


def table(headers: list[str], rows: list[list]) -> dict:
    return {"table": {"headers": headers, "rows": rows}}


def figure(name: str, alt: str, notes: list[str], draw) -> dict:
    return {"img": name, "alt": alt, "notes": notes, "draw": draw}


def data_section(data: dict | None, stats) -> dict:
    if data is None:
        return section("data", "Data", [], None)
    from parrot.stats.files import PLOTS, context_plot_notes, sampling_note, table_cells

    rows = data["datasets"]
    note = sampling_note(rows, stats.config).splitlines()  # the settings stats ran with
    blocks = [{"p": f"Datasets side by side, from `{data['source']}` (`parrot stats`)."}, table(*table_cells(rows))]
    blocks += [{"p": note[0]}, {"list": [line.removeprefix("- ") for line in note[1:] if line.strip()]}]
    blocks += _data_comparison_blocks(data.get("comparisons") or [])
    notes = {"context_by_turn.png": context_plot_notes(rows)}
    for name, plot in PLOTS.items():
        blocks.append(figure(f"data_{name}", name.removesuffix(".png"), notes.get(name, []), partial(plot, rows)))
    return section("data", "Data", blocks, data)


#: The data table's compared metrics, as the comparison table names them, and their decimals.
DATA_METRICS = {
    "turns": ("turns/session", 2),
    "context_dependent": ("ctx-dep. q/session", 2),
    "context_share": ("ctx-dep. share of follow-ups", 2),
    "user_words": ("user len (words)", 1),
    "assistant_words": ("assistant len (words)", 1),
}


def _data_comparison_blocks(comparisons: list[dict]) -> list[dict]:
    """Each pair of datasets on each compared metric: the difference, its interval and what it can detect."""
    if not comparisons:
        return []
    rows = []
    for c in comparisons:
        name, digits = DATA_METRICS[c["metric"]]
        if c["diff"] is None:
            diff = zero = "–"
        else:
            diff = f"{c['diff']:+.{digits}f} [{c['low']:+.{digits}f}, {c['high']:+.{digits}f}]"
            zero = "excludes 0" if c["excludes_zero"] else "includes 0"
            zero += " (rough: few sessions)" if min(c["n"]) < ROUGH_UNDER else ""
        need = f"about {c['needed']} each for {c['effect']:g}" if c["needed"] is not None else "–"
        sizes = " / ".join(map(str, c["n"]))
        rows.append([f"{c['a']} − {c['b']}", name, diff, sizes, zero, cell(c["mde"], digits), need])
    return [
        {
            "p": "Compared metrics, each pair of datasets (first minus second): the difference with a 95% interval "
            "over sessions (normal approximation; a per-message metric clustered by session), its minimum "
            "detectable effect at 80% power (two-sided 5%), and the sessions each dataset would need for the "
            "reference effect at this run's spread (equal sizes). An interval that includes 0 cannot tell; under "
            f"{ROUGH_UNDER} sessions on a side, the normal interval is rough (too narrow)."
        },
        table(
            ["datasets", "metric", "difference [95% interval]", "sessions", "interval", "MDE (80% power)", "needed"],
            rows,
        ),
    ]


# ---------------------------------------------------------------- simulators

SIMULATOR_HEADERS = (
    "asker arm|asker mode|sessions|ended by the simulator|turns/session (mean / median)|length distance to real "
    "(KS / TV) ↓|degenerate questions ↓|first-question diversity (distinct-2 / cosine) ↑"
).split("|")


def interval(c: dict | None, digits: int = 2, *, share: bool = False, signed: bool = False) -> str:
    """An interval cell (``{"value", "low", "high"}``) as the tables show it: the value and its 95%
    interval in brackets (a share in percent, as the verified sections show theirs).

    >>> interval({"value": 0.42, "low": 0.3, "high": 0.55}), interval({"value": 0.5, "low": 0.25, "high": 0.75}, share=True)
    ('0.42 [0.30, 0.55]', '50% [25, 75]')
    >>> interval({"value": 0.5, "low": None, "high": None}, share=True), interval(None)
    ('50%', '–')
    """
    if not c or c.get("value") is None:
        return "–"
    shown = cell(float(c["value"]), digits, share=share, signed=signed)
    if c.get("low") is None or c.get("high") is None:
        return shown
    if share:
        return f"{shown} [{100 * c['low']:.0f}, {100 * c['high']:.0f}]"
    return f"{shown} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"


def _arm_row(name: str, m: dict) -> list[str]:
    turns, ci = m.get("turns") or {}, m.get("intervals") or {}
    role, first = m.get("role_adherence") or {}, m.get("first_questions") or {}
    return [
        name + (f" (only {m.get('sessions')} sessions)" if m.get("too_few") else ""),
        (m.get("asker") or {}).get("mode") or "–",
        cell(m.get("sessions")),
        interval(ci.get("self_ended"), share=True),
        f"{interval(ci.get('turns_mean'))} / {cell(turns.get('median'), 1)}",
        f"{interval(ci.get('ks'), 3)} / {interval(ci.get('tv'), 3)}",
        f"{interval(role.get('degenerate_after'), share=True)} of {cell(role.get('questions'))}",
        f"{interval(ci.get('distinct_2'), 3)} / {cell(first.get('cosine_distance'), 3)}"
        if first.get("topic_seeded")
        else "– (seeded with real questions)",
    ]


def _counts_table(title: str, counts: list[tuple[str, dict]]) -> list[dict]:
    reasons = sorted({r for _, c in counts for r in c})
    rows = [[n, *(cell(c.get(r, 0)) for r in reasons)] for n, c in counts]
    return [{"p": f"{title}:"}, table(["asker arm", *reasons], rows)] if reasons else []


def _redraw_blocks(measures: list[tuple[str, dict]]) -> list[dict]:
    """Degenerate questions before and after synthesize's redraws, and the redraws by reason."""
    roles = [(n, m.get("role_adherence") or {}) for n, m in measures]
    rows = [
        [n, cell(r.get("drawn")), interval(r.get("degenerate_before"), share=True), cell(r.get("questions"))]
        + [interval(r.get("degenerate_after"), share=True), cell(sum((r.get("redraws") or {}).values()))]
        for n, r in roles
    ]
    headers = ["asker arm", "questions drawn", "degenerate before redraws", "questions kept"]
    blocks = [
        {
            "p": "Degenerate questions before and after redraws (a question synthesize rejected is drawn again; "
            "before: rejected + degenerate kept over all drawn; after: degenerate kept over kept; 95% interval "
            "over sessions):"
        },
        table([*headers, "degenerate after redraws", "redraws"], rows),
    ]
    return blocks + _counts_table("Redraws by reason", [(n, r.get("redraws") or {}) for n, r in roles])


def _likeness_blocks(arms: list[tuple[str, dict | None]]) -> list[dict]:
    """The stats run's human-likeness of each arm's questions, with its interval."""
    rows = [
        [n, interval(hl.get("auc_ci"), 3), cell(hl.get("n_per_class"))]
        for n, hl in arms
        if hl and hl.get("auc_ci") and hl["auc_ci"].get("value") is not None
    ]
    if not rows:
        return []
    return [
        {
            "p": "Human-likeness: how well a classifier tells the arm's questions from real users' (AUC of "
            "its pooled out-of-fold scores, from the stats step; 0.5: it cannot tell them apart; 95% interval, "
            "each class resampled):"
        },
        table(["asker arm", "AUC ↓", "questions per class"], rows),
    ]


def _heldout_blocks(trained: list[tuple[str, dict]], n_boot: int | None) -> list[dict]:
    heldout = (
        "Loss on held-out real user turns (the same held-out sessions and tokenizer; lower is better). Per "
        "session: trained minus base, paired over held-out sessions, with its minimum detectable effect at "
        "80% power and the sessions the reference effect would need:"
    )
    headers = ["asker arm", "trained simulator", "untrained base (the prompted asker)", "difference"]
    headers += ["per-session difference [95% interval]", "MDE (80% power)"]
    losses = []
    for n, h in trained:
        paired = h.get("per_session") or {}
        diff = {"value": paired.get("mean_diff"), "low": paired.get("low"), "high": paired.get("high")}
        few = f" ({paired['n']} sessions{', too few to read' if paired['n'] < MIN_HELDOUT else ''})" if paired else ""
        per_session = interval(diff, 3, signed=True) + few
        power = paired.get("power") or {}
        mde = cell(power.get("mde"), 3)
        if power.get("needed") is not None:
            mde += f" (about {power['needed']} sessions for {power['effect']:.3f})"
        losses.append([n, cell(h["trained"], 3), cell(h["base"], 3), cell(h["difference"], signed=True), per_session])
        losses[-1].append(mde)
    blocks = [{"p": heldout}, table(headers, losses)]
    rows = []
    for n, h in trained:
        for model, t in (h.get("termination") or {}).items():
            who = "trained simulator" if model == "trained" else "untrained base"
            few = " (too few to read)" if t["sessions"] < MIN_HELDOUT else ""
            scores = [interval(t.get(k)) for k in ("precision", "recall", "f1")]
            rows.append([n, who, *scores, f"{t['turns']} ({t['stops']})", f"{t['sessions']}{few}"])
    if rows:
        rule = next((h.get("rule") for _, h in trained if h.get("rule")), "")
        blocks.append(
            {
                "p": "Termination on held-out real sessions: after each real answer (teacher-forced), does the "
                f'simulator stop where the real user did? Precision, recall and F1 of "stops here" ({rule}); '
                f"95% interval over held-out sessions ({n_boot} resamples):"
            }
        )
        headers = ["asker arm", "model", "precision", "recall", "F1 ↑", "turns (real stops)", "held-out sessions"]
        blocks.append(table(headers, rows))
    return blocks


#: Below this many held-out sessions, the held-out numbers are marked too few to read.
MIN_HELDOUT = 20


def simulators_section(data: dict | None) -> dict:
    if data is None:
        return section("simulators", "Simulators", [], None)
    arms = data["arms"]
    measures = [(a["name"], a["measures"]) for a in arms]
    real = next((m["real_turns"] for _, m in measures if m.get("real_turns")), None)
    rows = [_arm_row(name, m) for name, m in measures]
    if real:
        turns = f"{cell(real.get('mean'))} / {cell(real.get('median'), 1)}"
        rows.append(["real users", "–", cell(real.get("n")), "–", turns, "–", "–", "–"])
    blocks = [table(SIMULATOR_HEADERS, rows)]
    note = next((m["note"] for _, m in measures if m.get("note")), None)
    blocks += [{"p": note}] if note else []
    blocks += _counts_table("How sessions ended", [(n, m.get("end_reasons") or {}) for n, m in measures])
    by_reason = [(n, (m.get("role_adherence") or {}).get("by_reason") or {}) for n, m in measures]
    blocks += _counts_table("Degenerate questions by reason", by_reason)
    blocks += _redraw_blocks(measures)
    blocks += _likeness_blocks([(a["name"], a.get("human_likeness")) for a in arms])
    trained = [(a["name"], a["heldout_loss"]) for a in arms if a["heldout_loss"]]
    if trained:
        blocks += _heldout_blocks(trained, data.get("n_boot"))
    else:
        blocks.append({"p": "Held-out loss: no trained simulator among the arms (`asker_models`)."})
    lengths = [
        {"name": n, "hist": (m.get("turns") or {}).get("hist"), **{k: m.get(k) for k in ("sessions", "too_few")}}
        for n, m in measures
    ]
    notes = [f"{a['name']}: no sessions to plot." for a in lengths if not a["hist"]]
    few = "sessions, too few to read a distribution from."
    notes += [f"{a['name']}: only {a['sessions']} {few}" for a in lengths if a["too_few"] and a["hist"]]
    draw = partial(plots.plot_session_lengths, lengths, real)
    blocks.append(figure("simulators_session_lengths.png", "session lengths", notes, draw))
    return section("simulators", "Simulators", blocks, data)


# ---------------------------------------------------------------- training, CaPO pairs

TRAINING_HEADERS = (
    "model|stage|steps|train loss (mean)|last logged loss|held-out loss|held-out loss, base model|logged points"
).split("|")


def training_section(data: dict | None) -> dict:
    if data is None:
        return section("training", "Training", [], None)
    from parrot.train.trainer import LOSSES  # steps, then the losses: the columns of TRAINING_HEADERS

    models = data["models"]
    losses = [[cell(m["losses"].get(k), 3) for k in LOSSES] for m in models]
    rows = [[m["name"], m["stage"] or "no manifest", *x, str(len(m["loss_curve"]))] for m, x in zip(models, losses)]
    curves = [{"name": m["name"], "points": m["loss_curve"], "eval_points": m["eval_curve"]} for m in models]
    notes = [f"{m['name']}: no loss curve recorded." for m in models if not m["loss_curve"]]
    notes += [f"{m['name']}: one logged step only." for m in models if len(m["loss_curve"]) == 1]
    plot = figure("training_loss.png", "training loss", notes, partial(plots.plot_losses, curves))
    return section("training", "Training", [table(TRAINING_HEADERS, rows), plot], data)


def capo_section(data: dict | None) -> dict:
    if data is None:
        return section("capo", "CaPO pairs", [], None)
    files = data["files"]
    strategies = sorted({s for f in files for s in f["by_strategy"]})
    turns = sorted({t for f in files for t in f["by_turn"]})
    by_strategy = [[f["name"], *(str(f["by_strategy"].get(s, 0)) for s in strategies), str(f["pairs"])] for f in files]
    by_turn = [[f["name"], *(str(f["by_turn"].get(t, 0)) for t in turns)] for f in files]
    blocks = [
        {"p": "Pairs by strategy:"},
        table(["pair file", *strategies, "total"], by_strategy),
        {"p": "Pairs by turn of the question:"},
        table(["pair file", *(f"turn {t}" for t in turns)], by_turn),
    ]
    notes = [f"{f['name']}: no pairs." for f in files if not f["pairs"]]
    blocks.append(
        figure("capo_pairs_by_turn.png", "CaPO pairs by turn", notes, partial(plots.plot_pairs_by_turn, files))
    )
    return section("capo", "CaPO pairs", blocks, data)


# ---------------------------------------------------------------- benches


def bench_section(cfg, key: str, data: dict | None) -> dict:
    bench = key.removeprefix("bench:")
    title = BENCH_TITLES.get(bench, bench)
    if data is None:
        return section(key, title, [], None)
    models, qcount = data["models"], data["questions_by_turn"]
    turns = sorted({t for m in models.values() for t in m["by_turn"]})
    rows = [
        [n, cell(m["overall"]), *(cell(m["by_turn"].get(t)) for t in turns), str(m["judged"]), str(m["unparsable"])]
        for n, m in sorted(models.items())
    ]
    blocks = [{"warn": data["warning"]}] if data["warning"] else []
    judges = ", ".join(f"`{j}`" for j in data["judges"]) or "unknown"
    blocks.append(
        {
            "p": f"Judge: {judges}; {len(data['sources'])} judgment file(s). Scores 1–10, mean over questions; "
            "-1 (no rating could be read) excluded and counted; several judge runs: median [min–max]."
        }
    )
    blocks.append(table(["model", "overall", *(f"turn {t}" for t in turns), "judged", "-1 excluded"], rows))
    notes = [f"{m}: no scored judgments." for m in sorted(models) if models[m]["overall"] is None]
    for m in sorted(models):
        few = [t for t in turns if models[m]["by_turn"].get(t) and qcount.get(m, {}).get(t, 0) < cfg.min_questions]
        if few:
            n = min(qcount.get(m, {}).get(t, 0) for t in few)
            notes.append(
                f"{m}: turn(s) {', '.join(map(str, few))} have fewer than {cfg.min_questions} scored "
                f"questions (as few as {n})."
            )
    draw = partial(
        plot_scores, models, title=f"{title}: score by turn", questions=qcount, min_questions=cfg.min_questions
    )
    blocks.append(figure(f"score_by_turn_{bench}.png", f"{title} score by turn", notes, draw))
    return section(key, title, blocks, data)


# ---------------------------------------------------------------- verified benches


def _share(acc: dict | None, interval: bool = True) -> str:
    if not acc or acc.get("mean") is None:
        return "–"
    shown = f"{100 * acc['mean']:.1f}%"
    return f"{shown} [{100 * acc['low']:.0f}, {100 * acc['high']:.0f}]" if interval else shown


def verified_section(cfg, key: str, data: dict | None) -> dict:
    """Accuracy by turn and retention for every model on a bench a program checks (strict; loose beside)."""
    bench = key.removeprefix("verified:")
    title = f"Verified instruction following ({bench})"
    if data is None:
        return section(key, title, [], None)
    models = data["models"]
    if not models:
        return section(key, title, [{"p": f"No answers to verify in {', '.join(data['sources'])}."}], data)
    names = sorted(models)
    turns = sorted({int(t) for m in models.values() for t in m["by_turn"]})
    blocks = [
        {
            "p": f"Every instruction active at a turn (IFEval's kinds) checked by a program on the model's answer, "
            f"{len(data['sources'])} file(s). Share of instructions followed, strict (loose: first/last line and "
            f"`*` ignored, as IFEval), with a bootstrap 95% interval over conversations ({cfg.n_boot} resamples). "
            "No judge is involved, so these numbers rank models at any model size."
        },
        table(
            ["model", "instructions (strict)", "instructions (loose)", "turns all followed (strict)", "checked"],
            [
                [
                    n,
                    _share(models[n]["overall"].get("instruction", {}).get("strict")),
                    _share(models[n]["overall"].get("instruction", {}).get("loose")),
                    _share(models[n]["overall"].get("turn", {}).get("strict")),
                    str((models[n]["overall"].get("instruction", {}).get("strict") or {}).get("items", 0)),
                ]
                for n in names
            ],
        ),
        {"p": "By turn (instructions followed, strict [95% interval]; conversations answered at that turn):"},
        table(
            ["model", *(f"turn {t}" for t in turns)],
            [
                [n, *(_share(models[n]["by_turn"].get(str(t), {}).get("instruction", {}).get("strict")) for t in turns)]
                for n in names
            ],
        ),
    ]
    distances = sorted({int(d) for m in models.values() for d in m["retention"]})
    blocks.append(
        {"p": "Retention: instructions followed by how many turns ago they were given (0: at this turn; strict):"}
    )
    blocks.append(
        table(
            ["model", *(f"{d} ago" for d in distances)],
            [[n, *(_share(models[n]["retention"].get(str(d), {}).get("strict")) for d in distances)] for n in names],
        )
    )
    kinds = sorted({k for m in models.values() for k in m["by_kind"]})
    blocks.append({"p": "By kind of instruction (strict):"})
    blocks.append(
        table(
            ["model", *kinds],
            [[n, *(_share(models[n]["by_kind"].get(k, {}).get("strict"), False) for k in kinds)] for n in names],
        )
    )
    blocks.append(
        figure(
            f"verified_{bench}_by_turn.png",
            f"{bench}: instructions followed by turn",
            [],
            partial(plots.plot_shares, models, "by_turn", title=f"{bench}: instructions followed by turn"),
        )
    )
    blocks.append(
        figure(
            f"verified_{bench}_retention.png",
            f"{bench}: retention",
            [],
            partial(plots.plot_shares, models, "retention", title=f"{bench}: followed, by turns since given"),
        )
    )
    return section(key, title, blocks, data)


# ---------------------------------------------------------------- the bill


def estimate_section(path: str) -> dict:
    """Tokens and seconds per step, the estimate made before the run against the manifests'
    (``parrot pipeline --plan --estimate``; docs/experiment.md)."""
    import json
    from pathlib import Path

    title = "Cost: estimate against actual"
    file = Path(path)
    if not file.is_file():
        return section("estimate", title, [], None)
    doc = json.loads(file.read_text(encoding="utf-8"))
    rows = doc.get("compare") or []

    def off(est, act) -> str:
        return "-" if act in (None, 0) else f"{(est - act) / act:+.0%}"

    body = [
        [
            r["step"],
            r["stage"],
            str(r["tokens_estimate"]),
            str(r.get("tokens_actual", "-")),
            off(r["tokens_estimate"], r.get("tokens_actual")) if r["tokens_estimate"] else "-",
            f"{r['seconds_estimate']:.0f}",
            "-" if r.get("seconds_actual") is None else f"{r['seconds_actual']:.0f}",
            off(r["seconds_estimate"], r.get("seconds_actual")),
        ]
        for r in rows
    ]
    done = [r for r in rows if "seconds_actual" in r]
    est, act = sum(r["seconds_estimate"] for r in done), sum(r["seconds_actual"] for r in done)
    body.append(["total (steps run)", "", "", "", "", f"{est:.0f}", f"{act:.0f}", off(est, act)])
    blocks = [
        {
            "p": f"Tokens (prompt + completion, every role) and seconds per step; the estimate's basis: {doc.get('basis')}."
        },
        table(["step", "stage", "tokens est.", "tokens actual", "off by", "s est.", "s actual", "off by"], body),
    ]
    return section("estimate", title, blocks, rows)
