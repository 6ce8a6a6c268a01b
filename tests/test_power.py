"""What a comparison can detect (:mod:`parrot.report.power`) and the data table's standard errors over
sessions (:mod:`parrot.stats.moments`), against reference values computed once, outside the project,
with statsmodels 0.15.0 (scipy 1.17.1) in a throwaway virtualenv:

    from statsmodels.stats.power import NormalIndPower
    P = NormalIndPower()
    P.solve_power(effect_size=None, nobs1=n, alpha=0.05, power=0.8, ratio=0)     # paired: MDE / sd
    P.solve_power(effect_size=e / sd, nobs1=None, alpha=0.05, power=0.8, ratio=0)  # paired: n needed
    P.solve_power(effect_size=None, nobs1=n, alpha=0.05, power=0.8, ratio=1)     # two samples of n
    P.solve_power(effect_size=e / sd, nobs1=None, alpha=0.05, power=0.8, ratio=1)  # n per sample
    import statsmodels.api as sm   # a ratio over messages, clustered by session:
    sm.OLS(words, ones).fit(cov_type="cluster", cov_kwds={"groups": session}).bse[0]

(``ratio=0`` is statsmodels' one-sample z test: the paired differences as one sample.)"""

from __future__ import annotations

import math
import statistics

import pytest

from parrot.report.bootstrap import paired_bootstrap
from parrot.report.numbers import compare_datasets, with_power
from parrot.report.power import Z80, mde, needed, paired_power, two_sample
from parrot.report.verdict import _sentence
from parrot.stats.moments import SessionMoments, estimate

# MDE in standard deviations of the paired differences, for n pairs (statsmodels, above)
PAIRED_MDE_SD = {
    5: 1.252905208173164,
    10: 0.8859380367156539,
    30: 0.5114964841399763,
    80: 0.31322635962154943,
    1000: 0.0885938474456881,
}


def test_z80_is_the_sum_of_the_two_normal_quantiles():
    # scipy.stats.norm.ppf(0.975) + norm.ppf(0.8)
    assert Z80 == pytest.approx(2.8015852181129683, abs=1e-9)


@pytest.mark.parametrize("n", sorted(PAIRED_MDE_SD))
def test_the_paired_mde_is_statsmodels_one_sample_z_test(n):
    sd = 1.7
    assert mde(sd / math.sqrt(n)) == pytest.approx(PAIRED_MDE_SD[n] * sd, rel=1e-5)  # statsmodels solves to ~1e-6
    assert paired_power(sd, n, 0.3)["mde"] == pytest.approx(PAIRED_MDE_SD[n] * sd, abs=1e-4)


@pytest.mark.parametrize(
    "effect,sd,n",
    # statsmodels' fractional n: 87.20956138148833, 252.03563191451067, 125.58176989836906, rounded up
    [(0.3, 1.0, 88), (0.3, 1.7, 253), (0.05, 0.2, 126)],
)
def test_the_pairs_an_effect_needs_are_statsmodels_rounded_up(effect, sd, n):
    assert needed(sd**2, effect) == n
    assert paired_power(sd, 10, effect)["needed"] == n


def test_two_independent_samples_match_statsmodels():
    # n = 100 per sample, sd 1 each: MDE 0.39620357647695037 sd; n = 8: 1.4007888236809047 sd
    for n, d in ((100, 0.39620357647695037), (8, 1.4007888236809047)):
        side = {"value": 1.0, "se": 1 / math.sqrt(n), "n": n, "sd": 1.0}
        assert two_sample(side, side, 0.5)["mde"] == pytest.approx(d, abs=1e-4)
    # per sample to detect 0.5 with sd 1.0 and 1.3 on both sides: 62.79..., 106.11... -> 63, 107
    for sd, n in ((1.0, 63), (1.3, 107)):
        side = {"value": 1.0, "se": sd / 10, "n": 100, "sd": sd}
        assert two_sample(side, side, 0.5)["needed"] == n


def test_no_spread_no_mde_rather_than_a_detectable_zero():
    assert paired_power(0.0, 40, 0.3) == {"mde": None, "effect": 0.3, "needed": None}
    assert paired_power(None, 1, 0.3)["mde"] is None
    none = two_sample({"value": None, "se": None, "n": 0, "sd": None}, {"value": 1, "se": 0.1, "n": 9, "sd": 0.3}, 1)
    assert none["diff"] is None and none["mde"] is None and not none["excludes_zero"]


def test_the_paired_bootstrap_gives_the_sample_sd_the_mde_is_read_from():
    a = {str(q): float(s) for q, s in enumerate([6, 7, 5, 8, 6, 7, 9, 5])}
    b = {str(q): float(s) for q, s in enumerate([5, 7, 6, 6, 6, 5, 7, 5])}
    diffs = [a[q] - b[q] for q in a]
    r = with_power(paired_bootstrap(a, b, n_boot=200), "judged")
    assert r["sd"] == pytest.approx(statistics.stdev(diffs), abs=1e-6)
    assert r["power"]["mde"] == pytest.approx(Z80 * statistics.stdev(diffs) / math.sqrt(8), abs=1e-4)
    assert r["power"]["effect"] == 0.3 and r["power"]["needed"] == math.ceil((Z80 * statistics.stdev(diffs) / 0.3) ** 2)


def test_a_ratio_over_messages_has_statsmodels_cluster_robust_standard_error():
    words = [[3, 10, 4], [25], [7, 8], [2, 2, 2, 40], [12, 5]]  # words of each user message, by session
    m = SessionMoments()
    for s in words:
        m.add(user_messages=len(s), user_words=sum(s))
    c = estimate(m.to_dict(), "user_words")
    assert c["value"] == 10.0 and c["n"] == 5
    assert c["se"] == pytest.approx(2.006932429798717, rel=1e-9)  # statsmodels OLS, clusters = sessions
    share = SessionMoments()
    for dep, followups in [(1, 2), (2, 3), (0, 1), (3, 3), (1, 4)]:
        share.add(dependent=dep, followups=followups)
    c = estimate(share.to_dict(), "context_share")
    assert c["value"] == pytest.approx(7 / 13) and c["se"] == pytest.approx(0.16525727862448464, rel=1e-9)


def test_a_mean_over_sessions_has_the_textbook_standard_error():
    turns = [3, 4, 2, 5, 3, 3, 4]
    m = SessionMoments()
    for t in turns:
        m.add(turns=t)
    c = estimate(m.to_dict(), "turns")
    assert c["value"] == pytest.approx(statistics.mean(turns))
    assert c["se"] == pytest.approx(statistics.stdev(turns) / math.sqrt(len(turns)), rel=1e-12)


def test_data_comparisons_pair_every_dataset_with_a_normal_interval_over_sessions():
    def row(name, turns):
        m = SessionMoments()
        for t in turns:
            m.add(turns=t, followups=t - 1, user_messages=t, user_words=4 * t, assistant_messages=t)
        return {"name": name, "session_moments": m.to_dict()}

    a, b = [3, 4, 2, 5, 3, 3, 4], [2, 2, 3, 1, 2]
    rows = [row("parrot", a), row("selfchat", b), {"name": "old stats.json, no sums"}]
    found = {(c["a"], c["b"], c["metric"]): c for c in compare_datasets(rows)}
    assert {k[:2] for k in found} == {("parrot", "selfchat")}
    turns = found["parrot", "selfchat", "turns"]
    # Welch's standard error (scipy.stats.ttest_ind(a, b, equal_var=False): t 2.940328747131921 on 1.4286)
    se = (statistics.mean(a) - statistics.mean(b)) / 2.940328747131921
    assert turns["diff"] == pytest.approx(1.4286, abs=1e-4) and turns["n"] == [7, 5]
    assert turns["low"] == pytest.approx(1.428571 - 1.959964 * se, abs=1e-4) and turns["excludes_zero"]
    assert turns["mde"] == pytest.approx(Z80 * se, abs=1e-4) and turns["effect"] == 0.5
    no_context = found["parrot", "selfchat", "context_dependent"]  # 0 everywhere: an exact 0, no MDE
    assert no_context["diff"] == 0 and no_context["mde"] is None and not no_context["excludes_zero"]


def _judged(mean_diff, low, high, n, sd):
    o = {"mean_diff": mean_diff, "low": low, "high": high, "n": n, "sd": sd, "excludes_zero": low > 0 or high < 0}
    return {"a": "x", "b": "y", "bench": "mt-bench-pp", "overall": with_power(o, "judged")}


def test_a_small_sample_says_cannot_tell_and_what_its_size_can_detect():
    said, supported = _sentence(_judged(0.2, -0.4, 0.8, 12, 1.1), {}, {})
    assert not supported and "**cannot tell**" in said and "no difference" not in said
    mde_points = Z80 * 1.1 / math.sqrt(12)
    assert f"detected with 80% power from about {mde_points:.2f} points" in said
    need = math.ceil((Z80 * 1.1 / 0.3) ** 2)
    assert f"detecting 0.30 points would need about {need} questions (a rough estimate: the spread of only 12" in said
    alike, _ = _sentence(_judged(0.0, 0.0, 0.0, 1, None), {}, {})
    assert "**cannot tell**" in alike and "too few questions, or differences all alike" in alike


def test_a_small_judge_is_still_no_support_whatever_the_interval_and_the_mde():
    said, supported = _sentence(_judged(1.0, 0.6, 1.4, 80, 1.0), {"mt-bench-pp": {"smollm2": "small"}}, {})
    assert not supported and "too small to rank models" in said
    said, supported = _sentence(_judged(1.0, 0.6, 1.4, 80, 1.0), {}, {})
    assert supported and "**supported**" in said


def _claims_sections(tmp_path, loss, auc_a, auc_b, context):
    """A report's sections as the Simulators and Data sections leave them, for the three data claims."""
    parrot, selfchat = tmp_path / "parrot.jsonl", tmp_path / "selfchat.jsonl"
    arm = lambda name, auc, **kw: {  # noqa: E731
        "name": name,
        "human_likeness": {"auc_ci": {"value": auc[0], "low": auc[1], "high": auc[2], "n": 30}},
        **kw,
    }
    return (
        parrot,
        selfchat,
        {
            "simulators": {
                "arms": [
                    arm("Parrot-Ask", auc_a, heldout_loss={"per_session": loss}),
                    arm("Self-chat (prompted)", auc_b),
                ]
            },
            "data": {
                "datasets": [{"name": "P", "path": str(parrot)}, {"name": "S", "path": str(selfchat)}],
                "comparisons": [{"a": "S", "b": "P", "metric": "context_dependent", "n": [40, 40], **context}],
            },
        },
    )


def test_the_three_data_claims_are_read_in_their_direction_with_what_their_size_can_detect(tmp_path):
    from types import SimpleNamespace

    from parrot.report.verdict import data_claims

    loss = {"n": 40, "mean_diff": -0.2, "low": -0.3, "high": -0.1, "power": {"mde": 0.08, "effect": 0.05, "needed": 90}}
    # AUCs 0.70 [0.60, 0.80] and 0.90 [0.85, 0.95]: se 0.0510 and 0.0255, the difference -0.20 ± 1.96 * 0.0570
    context = {"diff": -0.4, "low": -0.9, "high": 0.1, "mde": 0.71, "needed": 81}  # self-chat − parrot
    parrot, selfchat, sections = _claims_sections(tmp_path, loss, (0.7, 0.6, 0.8), (0.9, 0.85, 0.95), context)
    claims = data_claims(SimpleNamespace(filtered=[str(parrot), str(selfchat)]), sections)
    assert [ok for _, ok in claims] == [True, True, False]
    assert "Claim 1, Parrot-Ask models held-out real users better" in claims[0][0] and "rough" not in claims[0][0]
    assert "-0.200 [-0.312, -0.088]" in claims[1][0]
    # claim 3 turned around to parrot − self-chat, and not seen at this size: what it could have seen
    assert "+0.40 [-0.10, +0.90]" in claims[2][0] and "**cannot tell**" in claims[2][0]
    assert "from about 0.71; 0.50 would need about 81 sessions" in claims[2][0]

    worse = {**loss, "mean_diff": 0.2, "low": 0.1, "high": 0.3}  # the trained model fits real users worse
    _, _, sections = _claims_sections(tmp_path, worse, (0.7, 0.6, 0.8), (0.9, 0.85, 0.95), context)
    [first, *_] = data_claims(SimpleNamespace(filtered=[str(parrot), str(selfchat)]), sections)
    assert first[1] is False and "**not supported**" in first[0] and "goes the other way" in first[0]
