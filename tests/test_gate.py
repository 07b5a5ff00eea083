"""The per-language gate: exact McNemar, Wilson interval, and language_gate on paired verdicts."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from illusion.errors import IllusionError
from illusion.verdict import ItemVerdict, by_language, language_gate, mcnemar_exact, pair, wilson_interval
from test_verdict import result

Z2 = 1.959963984540054**2  # 3.841458820694124


# ----------------------------------------------------------------------------- exact McNemar

@pytest.mark.parametrize("lost, gained, expected", [
    (5, 0, 2 / 32),  # n=5, k=5: P(X>=5) = C(5,5)/2^5 = 1/32; p = 2/32 = 0.0625
    (0, 5, 2 / 32),  # the same table mirrored
    (6, 0, 0.03125),  # n=6, k=6: 1/64; p = 2/64
    (10, 2, 2 * 79 / 4096),  # n=12, k=10: C(12,10)+C(12,11)+C(12,12) = 66+12+1 = 79; p = 2*79/2^12
    (9, 1, 2 * 11 / 1024),  # n=10, k=9: C(10,9)+C(10,10) = 10+1 = 11; p = 22/1024 = 0.0215
    (3, 3, 1.0),  # n=6, k=3: (20+15+6+1)/64 = 42/64; 2*42/64 > 1 -> 1
    (0, 0, 1.0),  # no discordant pairs: no evidence either way
])
def test_mcnemar_hand_values(lost, gained, expected):
    assert mcnemar_exact(lost, gained) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_large_n_stays_exact():
    # n = 3000 overflows float binomial terms (2^3000); exact sums must still give a sane p.
    # Near balance it matches the continuity-corrected normal approximation:
    # chi2 = (|1510-1490| - 1)^2 / 3000 = 361/3000 = 0.1203; p = erfc(sqrt(chi2/2)) = 0.7287.
    approx = math.erfc(math.sqrt((abs(1510 - 1490) - 1) ** 2 / 3000 / 2))
    assert mcnemar_exact(1510, 1490) == pytest.approx(approx, abs=0.005)
    assert 0.0 <= mcnemar_exact(2000, 0) < 1e-300  # 2 / 2^2000: far below float range, not negative
    assert mcnemar_exact(2500, 2500) == 1.0
    assert 0.0 < mcnemar_exact(1600, 1400) < 0.001  # z ~ 3.6


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError, match="lost=-1"):
        mcnemar_exact(-1, 2)


counts = st.integers(0, 400)


@given(counts, counts)
def test_mcnemar_is_a_symmetric_probability(lost, gained):
    p = mcnemar_exact(lost, gained)
    assert 0.0 <= p <= 1.0
    assert p == mcnemar_exact(gained, lost)
    if lost == gained:
        assert p == 1.0


@given(counts, st.integers(0, 400), st.integers(1, 50))
def test_mcnemar_falls_as_losses_grow(gained, extra, more):
    lost = gained + extra  # monotone on the side where losses already dominate
    assert mcnemar_exact(lost + more, gained) <= mcnemar_exact(lost, gained)


# ----------------------------------------------------------------------------- Wilson interval

@pytest.mark.parametrize("k, n, low, high", [
    # k=0: centre = half = z^2/(2(n+z^2)); hi = z^2/(n+z^2) = 3.8414588/13.8414588
    (0, 10, 0.0, 0.27753279986288920),
    # k=n: mirror of k=0; lo = n/(n+z^2) = 10/13.8414588
    (10, 10, 0.72246720013711080, 1.0),
    # p=0.5: centre 0.5; half = z/(1+z^2/10) * sqrt(0.25/10 + z^2/400)
    #        = 1.41600969 * sqrt(0.025 + 0.00960365) = 1.41600969 * 0.18602056 = 0.26340691
    (5, 10, 0.23659309051256400, 0.76340690948743600),
    # p=13/31=0.41935484; centre = (p + z^2/62)/(1 + z^2/31) = 0.48131385/1.12391803 = 0.42824640
    # half = z/1.12391803 * sqrt(p(1-p)/31 + z^2/3844) = 1.74386738 * sqrt(0.00785472 + 0.00099934)
    #      = 1.74386738 * 0.09409602 = 0.16409097
    (13, 31, 0.26415543067312230, 0.59233737504630285),
])
def test_wilson_hand_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-9) and hi == pytest.approx(high, abs=1e-9)


def test_wilson_without_trials_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(4, 3)


proportions = st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@given(proportions.filter(lambda kn: kn[1] > 0))
def test_wilson_contains_the_estimate_within_unit_range(kn):
    k, n = kn
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert lo < hi


@given(proportions.filter(lambda kn: kn[1] > 0))
def test_wilson_is_symmetric(kn):
    k, n = kn
    lo, hi = wilson_interval(k, n)
    mirror_lo, mirror_hi = wilson_interval(n - k, n)
    assert lo == pytest.approx(1 - mirror_hi, abs=1e-12)
    assert hi == pytest.approx(1 - mirror_lo, abs=1e-12)


@given(proportions.filter(lambda kn: kn[1] > 0), st.integers(2, 20))
def test_wilson_narrows_with_more_trials(kn, scale):
    k, n = kn
    lo, hi = wilson_interval(k, n)
    big_lo, big_hi = wilson_interval(k * scale, n * scale)
    assert big_hi - big_lo < hi - lo


# ----------------------------------------------------------------------------- language_gate

def verdicts(lang: str, cells: dict[tuple[tuple[bool, bool], tuple[bool, bool]], int]) -> list[ItemVerdict]:
    """``count`` items per ((candidate mc, gen), (reference mc, gen)) cell, ids numbered in order."""
    out = []
    for (cand, ref), count in cells.items():
        for _ in range(count):
            key = f"{lang}-{len(out)}"
            out.append(ItemVerdict(candidate=result(key, *cand), reference=result(key, *ref)))
    return out


RIGHT, ILLUSION, MC_WRONG_GEN_WRONG = (True, True), (True, False), (False, False)


def test_items_the_candidate_gets_mc_wrong_are_not_paired():
    # 10 items where the reference answers but the candidate is wrong on both: not a generation loss
    # among recognised items, so they must not count (they would give p = 2/1024 otherwise).
    gate = language_gate("fr", verdicts("fr", {(MC_WRONG_GEN_WRONG, RIGHT): 10, (RIGHT, RIGHT): 4}))
    assert (gate.pairs, gate.lost, gate.gained, gate.mc_correct) == (4, 0, 0, 4)
    assert gate.p_value == 1.0 and gate.passed


def test_a_clear_loss_fails_the_gate():
    # 12 recognised items the reference says and the candidate does not: p = 2/2^12 = 0.000488
    gate = language_gate("fr", verdicts("fr", {(ILLUSION, RIGHT): 12, (RIGHT, RIGHT): 20}))
    assert (gate.lost, gate.gained, gate.pairs) == (12, 0, 32)
    assert gate.p_value == pytest.approx(2 / 4096) and gate.p_value < gate.alpha
    assert gate.significant_loss and not gate.over_budget and not gate.passed
    text = gate.message()
    assert text.startswith("[fr] FAILED: significant generation loss")
    assert "lost on 12 of 32" in text and "(gained on 0)" in text and "p = 0.000488 < alpha 0.05" in text
    assert "illusion rate 0.38 (12/32)" in text and "no budget set" in text


def test_the_suite_check_fails_a_failed_gate_with_its_message_and_passes_the_others():
    from illusion.checks import check_language_gate

    failed = language_gate("fr", verdicts("fr", {(ILLUSION, RIGHT): 12, (RIGHT, RIGHT): 20}))
    with pytest.raises(pytest.fail.Exception) as info:
        check_language_gate(failed)
    assert str(info.value) == failed.message() and not info.value.pytrace
    check_language_gate(language_gate("fr", verdicts("fr", {(RIGHT, RIGHT): 20})))


def test_a_budget_breach_fails_even_when_mcnemar_passes():
    # the reference has the same 3 illusions, so nothing is lost (p = 1), but 3/10 > budget 0.2
    gate = language_gate("de", verdicts("de", {(ILLUSION, ILLUSION): 3, (RIGHT, RIGHT): 7}),
                         max_illusion_rate=0.2)
    assert gate.p_value == 1.0 and not gate.significant_loss
    assert gate.illusion_rate == pytest.approx(0.3) and gate.over_budget and not gate.passed
    text = gate.message()
    assert "illusion rate over budget" in text.splitlines()[0]
    assert "significant generation loss" not in text
    assert "budget 0.20 exceeded" in text and "no significant loss" in text


def test_a_rate_within_budget_passes():
    gate = language_gate("de", verdicts("de", {(ILLUSION, ILLUSION): 3, (RIGHT, RIGHT): 7}),
                         max_illusion_rate=0.3)
    assert gate.passed and "budget 0.30 respected" in gate.message()
    assert gate.message().startswith("[de] passed")


def test_a_pure_gain_never_fails_the_mcnemar_part():
    gate = language_gate("sw", verdicts("sw", {(RIGHT, ILLUSION): 12}))
    assert (gate.lost, gate.gained) == (0, 12) and gate.p_value < 0.05
    assert not gate.significant_loss and gate.passed
    assert "gained more than it lost" in gate.message()


def test_other_languages_are_ignored():
    mixed = verdicts("en", {(ILLUSION, RIGHT): 12}) + verdicts("fr", {(RIGHT, RIGHT): 5})
    gate = language_gate("fr", mixed)
    assert (gate.pairs, gate.lost) == (5, 0) and gate.passed


def test_no_mc_correct_item_gives_no_rate():
    gate = language_gate("th", verdicts("th", {(MC_WRONG_GEN_WRONG, RIGHT): 3}), max_illusion_rate=0.0)
    assert gate.illusion_rate is None and gate.interval == (0.0, 1.0) and gate.passed
    assert "illusion rate n/a" in gate.message()


def test_as_dict_has_the_report_fields_and_is_json():
    gate = language_gate("fr", verdicts("fr", {(ILLUSION, RIGHT): 9, (RIGHT, ILLUSION): 1, (RIGHT, RIGHT): 21}),
                         max_illusion_rate=0.25)
    data = gate.as_dict()
    assert list(data) == ["pairs", "lost", "gained", "p_value", "alpha", "recognition_only", "mc_correct",
                          "illusion_rate", "interval", "max_illusion_rate", "passed"]
    assert data["interval"] == list(wilson_interval(9, 31)) and data["passed"] is False
    assert json.loads(json.dumps(data)) == data
    assert "p = 0.0215 < alpha 0.05" in gate.message()  # 2*11/1024, the (9, 1) table


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_alpha_names_the_option(alpha):
    with pytest.raises(ValueError, match="--illusion-alpha") as info:
        language_gate("fr", [], alpha=alpha)
    assert isinstance(info.value, IllusionError)  # the plugin reports it without a traceback


@pytest.mark.parametrize("budget", [-0.01, 1.01, float("nan")])
def test_bad_budget_names_the_option(budget):
    with pytest.raises(ValueError, match="--illusion-max-illusion-rate"):
        language_gate("fr", [], max_illusion_rate=budget)


flags = st.tuples(st.booleans(), st.booleans())


@given(st.lists(st.tuples(st.sampled_from(["en", "fr"]), flags, flags), max_size=60),
       st.floats(0.001, 0.999), st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_gate_agrees_with_language_counts(rows, alpha, budget):
    cand = [result(f"{lang}-{n}", *c) for n, (lang, c, _) in enumerate(rows)]
    ref = [result(f"{lang}-{n}", *r) for n, (lang, _, r) in enumerate(rows)]
    paired = pair(cand, ref)
    for lang, lv in by_language(paired).items():
        gate = language_gate(lang, paired, alpha=alpha, max_illusion_rate=budget)
        assert gate.pairs == gate.mc_correct == lv.candidate.mc_correct
        assert gate.recognition_only == lv.candidate.recognition_only
        assert gate.illusion_rate == lv.candidate.illusion_rate
        assert gate.lost + gate.gained <= gate.pairs
        assert gate.p_value == mcnemar_exact(gate.lost, gate.gained)
        assert gate.passed == (not gate.significant_loss and not gate.over_budget)
        if gate.lost <= gate.gained:
            assert not gate.significant_loss
