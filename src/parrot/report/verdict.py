"""The comparisons' section and what the numbers support: for each comparison and bench, whether a
difference is supported (its interval excludes 0 and, on a judged bench, the judge is able to rank;
a verified bench is checked by a program), in words; then the paper's three data claims, which need
no judge (:func:`data_claims`)."""

from __future__ import annotations

from pathlib import Path

from parrot.core.markdown import cell
from parrot.report.numbers import BENCH_TITLES
from parrot.report.power import REFERENCE_EFFECTS, ROUGH_UNDER, Z_LEVEL, two_sample
from parrot.report.sections import section, table


def _interval(r: dict, verified: bool = False) -> str:
    """A difference and its interval: score points, or (``verified``) percentage points of accuracy."""
    if r.get("mean_diff") is None:
        return "–"
    if verified:
        return f"{100 * r['mean_diff']:+.1f} pp [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]"
    return f"{cell(r['mean_diff'], signed=True)} [{r['low']:+.2f}, {r['high']:+.2f}]"


def _what(r: dict) -> str:
    return "conversation" if r.get("verified") else "question"


def _size(x: float, verified: bool) -> str:
    return f"{100 * x:.1f} pp" if verified else f"{x:.2f} points"


def detectable(r: dict, what: str, verified: bool = False) -> tuple[str, str]:
    """A comparison's minimum detectable effect (80% power) and the units its reference effect needs,
    as the tables show them (:func:`parrot.report.power.paired_power`)."""
    power = r.get("power") or {}
    shown = _size(power["mde"], verified) if power.get("mde") is not None else "–"
    if power.get("needed") is None:
        return shown, "–"
    return shown, f"about {power['needed']} {what}s for {_size(power['effect'], verified)}"


def _can_detect(r: dict, what: str, verified: bool) -> str:
    """What a comparison that cannot tell could have seen at its size, in words."""
    power = r.get("power") or {}
    if power.get("mde") is None:
        return f"too few {what}s, or differences all alike, to estimate what this size can detect"
    rough = f" (a rough estimate: the spread of only {r['n']} {what}s)" if r["n"] < ROUGH_UNDER else ""
    return (
        f"at this size a difference is detected with 80% power from about {_size(power['mde'], verified)}; "
        f"detecting {_size(power['effect'], verified)} would need about {power['needed']} {what}s{rough}"
    )


def _questions(n: int) -> str:
    return f"{n} question" + ("" if n == 1 else "s")


def comparisons_section(cfg, results: list[dict] | None) -> dict:
    if results is None:
        return section("comparisons", "Comparisons", [], None)
    if not results:
        return section("comparisons", "Comparisons", [{"p": "No judgments to compare (`judgments`)."}], results)
    rows = []
    for r in results:
        title = BENCH_TITLES.get(r["bench"], r["bench"])
        if r.get("missing"):
            rows.append([r["comparison"], title, "0", "–", f"no answers of {', '.join(r['missing'])}"])
            continue
        o = r["overall"]
        zero = "excludes 0" if o["excludes_zero"] else "includes 0"
        size = detectable(o, _what(r), bool(r.get("verified")))
        rows.append([r["comparison"], title, f"{o['n']} {_what(r)}s", _interval(o, r.get("verified")), zero, *size])
    blocks = [
        {
            "p": "Judged benches: mean score difference (first model minus second) over the questions both models "
            "answered; a question's score is the mean of its judged turns. Verified benches: difference in the "
            "share of instructions followed (strict, percentage points) over the conversations both models "
            "answered, each conversation's share counting once. Each with a paired bootstrap 95% interval "
            f"({cfg.n_boot} resamples of the questions or conversations, seed {cfg.seed}). What the comparison "
            "can detect: its minimum detectable effect (MDE) at 80% power, two-sided 5% (normal approximation, "
            "from the spread of the paired differences, each question or conversation one unit), and how many "
            "questions or conversations the reference effect would need at this run's spread."
        },
        table(
            [
                "comparison",
                "bench",
                "paired over",
                "difference [95% interval]",
                "interval",
                "MDE (80% power)",
                "needed",
            ],
            rows,
        ),
    ]
    turns = sorted({t for r in results for t in r.get("by_turn", {})})
    if turns:
        by_turn = [
            [
                r["comparison"],
                BENCH_TITLES.get(r["bench"], r["bench"]),
                *(_interval(r["by_turn"][t], r.get("verified")) if t in r["by_turn"] else "–" for t in turns),
            ]
            for r in results
            if not r.get("missing")
        ]
        blocks.append(
            {
                "p": "By turn (difference [95% interval], over the questions judged or conversations answered at that "
                "turn; each turn's MDE is in report.json):"
            }
        )
        blocks.append(table(["comparison", "bench", *(f"turn {t}" for t in turns)], by_turn))
    return section("comparisons", "Comparisons", blocks, results)


def _sentence(r: dict, small: dict, flat: dict) -> tuple[str, bool]:
    """What one comparison on one bench supports, and whether it is a supported difference."""
    title = BENCH_TITLES.get(r["bench"], r["bench"])
    a, b = r["a"], r["b"]
    if r.get("missing"):
        return f"{a} vs {b} on {title}: cannot be compared, no answers of {', '.join(r['missing'])}.", False
    o = r["overall"]
    if r.get("verified"):  # checked by a program: no judge to be too small
        shown = f"{_interval(o, True)} (95% interval, {o['n']} conversations)"
        if o["excludes_zero"]:
            better, worse = (a, b) if o["mean_diff"] > 0 else (b, a)
            return (
                f"{a} vs {b} on {title}: **supported**: {better} follows more of its instructions than {worse}: "
                f"{a} − {b} = {shown}."
            ), True
        return (
            f"{a} vs {b} on {title}: **cannot tell**: {a} − {b} = {shown}; the interval includes 0; "
            f"{_can_detect(o, 'conversation', True)}."
        ), False
    shown = (
        f"{cell(o['mean_diff'], signed=True)} (95% interval {o['low']:+.2f} to {o['high']:+.2f}, {_questions(o['n'])})"
    )
    if small.get(r["bench"]):
        judges = ", ".join(f"`{j}`" for j in small[r["bench"]])
        return (
            f"{a} vs {b} on {title}: {a} − {b} = {shown}; **not supported**: the judge ({judges}) is too small "
            "to rank models, so this difference means nothing."
        ), False
    if flat.get(r["bench"]):
        return f"{a} vs {b} on {title}: **not supported**: the judge gave every turn the same score.", False
    if o["excludes_zero"]:
        better, worse = (a, b) if o["mean_diff"] > 0 else (b, a)
        return (
            f"{a} vs {b} on {title}: **supported**: {better} scores higher than {worse} by "
            f"{abs(o['mean_diff']):.2f} points (95% interval of {a} − {b}: {o['low']:+.2f} to {o['high']:+.2f}, "
            f"{_questions(o['n'])})."
        ), True
    return (
        f"{a} vs {b} on {title}: **cannot tell**: {a} − {b} = {shown}; the interval includes 0; "
        f"{_can_detect(o, 'question', False)}."
    ), False


def support_section(cfg, sections: dict) -> dict:
    """What the numbers support (report.json's ``conclusions`` are its sentences)."""
    results = sections["comparisons"] or []
    bench_data = {k.removeprefix("bench:"): d for k, d in sections.items() if k.startswith("bench:")}
    small = {b: d["too_small_judges"] for b, d in bench_data.items() if d}
    flat = {b: d["warning"] for b, d in bench_data.items() if d and d.get("warning")}
    said = [_sentence(r, small, flat) for r in results]
    sentences, blocks = [s for s, _ in said], []
    judged = [b for b, d in bench_data.items() if d]
    small_benches = [b for b in judged if small.get(b)]
    if small_benches:
        specs = sorted({j for b in small_benches for j in small[b]})
        where = (
            "so no difference in this report is supported or meaningful, whatever the intervals say"
            if len(small_benches) == len(judged) and not cfg.verified
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
        blocks.append({"p": f"{sum(ok for _, ok in said)} of {len(sentences)} comparison(s) supported by this data."})
        blocks.append({"list": sentences})
    claims = data_claims(cfg, sections)
    if claims:
        blocks.append(
            {
                "p": f"The paper's data claims, which need no judge: {sum(ok for _, ok in claims)} of {len(claims)} "
                "supported by this data (supported: its 95% interval lies wholly on the claim's side of 0)."
            }
        )
        blocks.append({"list": [s for s, _ in claims]})
        sentences = sentences + [s for s, _ in claims]
    run = bool(cfg.compare or any(bench_data.values()) or cfg.verified or claims)
    return section("support", "What the numbers support", blocks if run else [], sentences)


# ---------------------------------------------------------------- the paper's data claims


def data_claims(cfg, sections: dict) -> list[tuple[str, bool]]:
    """The paper's three claims about data, each in words and whether this run supports it:

    1. the trained simulator models held-out real users better than its starting model (held-out
       loss per session, paired: the Simulators section);
    2. its questions are harder to tell from real users' than the prompted asker's (human-likeness
       AUC, lower is closer to real: the difference of the two arms' AUCs, normal approximation from
       their bootstrap intervals, as independent: the arms share the real questions, so this leans
       wide);
    3. its sessions hold more context-dependent follow-ups per session (the Data section's
       comparison of the two arms' filtered data, Table 1 of the paper).
    """
    arms = (sections.get("simulators") or {}).get("arms") or []
    out = []
    trained = next((a for a in arms if (a.get("heldout_loss") or {}).get("per_session")), None)
    if trained is not None:
        out.append(_loss_claim(trained["name"], trained["heldout_loss"]["per_session"]))
    likeness = [a for a in arms if ((a.get("human_likeness") or {}).get("auc_ci") or {}).get("low") is not None]
    if len(likeness) >= 2:
        out.append(_likeness_claim(likeness[0], likeness[1]))
    context = _context_comparison(cfg, sections, arms)
    if context is not None:
        out.append(_context_claim(*context))
    return out


def _power_words(mde: float | None, effect: float, needed: int | None, unit: str, fmt) -> str:
    if mde is None:
        return f"too few {unit}s, or differences all alike, to estimate what this size can detect"
    more = f"; {fmt(effect)} would need about {needed} {unit}s" if needed else ""
    return f"at this size a difference is detected with 80% power from about {fmt(mde)}{more}"


def _verdict(low: float, high: float, better_below: bool) -> str:
    """supported (the interval lies wholly on the claim's side of 0), against (wholly on the other), or
    cannot tell (it holds 0, or has no width: no spread to read an interval from)."""
    if low == high:
        return "cannot tell"
    if (high < 0) if better_below else (low > 0):
        return "supported"
    if (low > 0) if better_below else (high < 0):
        return "against"
    return "cannot tell"


def _claim(
    number: int, what: str, verdict: str, shown: str, power: str, units: list[int], unit: str
) -> tuple[str, bool]:
    if verdict == "supported":
        side = " a side" if len(units) > 1 else ""
        rough = f" (rough: only {min(units)} {unit}s{side})" if min(units) < ROUGH_UNDER else ""
        return f"Claim {number}, {what}: **supported**{rough}: {shown}.", True
    why = "the interval includes 0 or has no width" if verdict == "cannot tell" else "the difference goes the other way"
    says = "**cannot tell**" if verdict == "cannot tell" else "**not supported**"
    return f"Claim {number}, {what}: {says}: {shown}; {why}; {power}.", False


def _loss_claim(name: str, r: dict) -> tuple[str, bool]:
    nats = lambda x: f"{x:.3f} nats"  # noqa: E731
    shown = (
        f"trained − untrained held-out loss = {r['mean_diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] nats per "
        f"token (95% interval, {r['n']} held-out real sessions, paired)"
    )
    p = r.get("power") or {}
    power = _power_words(
        p.get("mde"), p.get("effect", REFERENCE_EFFECTS["heldout_loss"]), p.get("needed"), "session", nats
    )
    what = f"{name} models held-out real users better than its starting model"
    return _claim(1, what, _verdict(r["low"], r["high"], better_below=True), shown, power, [r["n"]], "session")


def _auc(arm: dict) -> dict:
    ci = arm["human_likeness"]["auc_ci"]
    se = (ci["high"] - ci["low"]) / (2 * Z_LEVEL)
    n = ci.get("n") or 1
    return {"value": ci["value"], "se": se, "n": n, "sd": se * n**0.5}


def _likeness_claim(trained: dict, prompted: dict) -> tuple[str, bool]:
    r = two_sample(_auc(trained), _auc(prompted), REFERENCE_EFFECTS["human_likeness"])
    a, b = trained["name"], prompted["name"]
    shown = (
        f"AUC of telling its questions from real users' (0.5: cannot tell them apart) {a} − {b} = "
        f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] (95% interval; {r['n'][0]} and {r['n'][1]} "
        "questions a side)"
    )
    power = _power_words(r["mde"], r["effect"], r["needed"], "question", lambda x: f"{x:.3f} of AUC")
    what = f"{a}'s questions are closer to real users' than {b}'s"
    return _claim(2, what, _verdict(r["low"], r["high"], better_below=True), shown, power, r["n"], "question")


def _context_comparison(cfg, sections: dict, arms: list[dict]):
    """The Data section's context-dependent-follow-ups comparison of the first two arms, as (first
    arm's name, second's, the comparison oriented first − second), or None."""
    data = sections.get("data") or {}
    by_path = {Path(d["path"]).resolve(): d["name"] for d in data.get("datasets") or [] if d.get("path")}
    names = [by_path.get(Path(f).resolve()) for f in (cfg.filtered or [])[:2]]
    if len(names) < 2 or None in names:
        return None
    for c in data.get("comparisons") or []:
        if c.get("metric") != "context_dependent" or {c["a"], c["b"]} != set(names) or c.get("diff") is None:
            continue
        if c["a"] != names[0]:  # oriented first arm − second
            c = {**c, "diff": -c["diff"], "low": -c["high"], "high": -c["low"], "n": list(reversed(c["n"]))}
        shown_names = [a["name"] for a in arms[:2]] if len(arms) >= 2 else names
        return shown_names[0], shown_names[1], c
    return None


def _context_claim(a: str, b: str, c: dict) -> tuple[str, bool]:
    shown = (
        f"context-dependent follow-ups per session {a} − {b} = {c['diff']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}] "
        f"(95% interval; {c['n'][0]} and {c['n'][1]} sessions)"
    )
    power = _power_words(c.get("mde"), c.get("effect", 0.5), c.get("needed"), "session", lambda x: f"{x:.2f}")
    what = f"{a}'s sessions hold more context-dependent follow-ups than {b}'s"
    return _claim(3, what, _verdict(c["low"], c["high"], better_below=False), shown, power, c["n"], "session")
