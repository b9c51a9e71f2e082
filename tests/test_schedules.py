"""In-round sparsity schedules against their formulas (docs/DESIGN.md §3, paper eq. 1).

The reference formulas below are written out independently of lth.pruning.schedules.
"""
import dataclasses
import inspect
import math

import pytest

import lth.pruning.schedules as schedules
from lth.errors import LthError

TS = [i / 200 for i in range(201)]  # 201 points of t in [0, 1], both ends included
PAIRS = [(0.0, 0.9), (0.2, 0.36), (0.5, 0.6), (0.0, 0.0), (0.3, 0.3)]
NAMES = ("one_shot", "imp", "iterative", "agp", "ocp")


# ---- reference formulas, written from the paper / docs/DESIGN.md §3 -----------------------

def ref_one_shot(t, s_i, s_f, start=0.4):
    return s_f if t >= start else s_i


def ref_iterative(t, s_i, s_f, start=0.2, end=1.0, steps=3):
    """`steps` equal jumps, at start + k * (end - start) / steps for k = 0 .. steps-1."""
    if t >= end or t >= 1.0:
        return s_f
    jumps = sum(1 for k in range(steps) if t >= start + k * (end - start) / steps)
    return s_i + (s_f - s_i) * jumps / steps


def ref_agp(t, s_i, s_f, start=0.2, end=1.0):
    """Zhu & Gupta: s_f + (s_i - s_f)(1 - tau)^3, tau the progress through [start, end]."""
    tau = min(1.0, max(0.0, (t - start) / (end - start)))
    return s_f + (s_i - s_f) * (1.0 - tau) ** 3


def ref_ocp(t, s_i, s_f, alpha=14.0, beta=5.0):
    """Paper eq. 1: s_t = s_i + (s_f - s_i) (1 + e^(-alpha + beta)) / (1 + e^(-alpha t + beta))."""
    return s_i + (s_f - s_i) * (1.0 + math.exp(-alpha + beta)) / (1.0 + math.exp(-alpha * t + beta))


def ref_imp(t, s_i, s_f):
    return s_f if t >= 1.0 else s_i


REFERENCES = {"one_shot": ref_one_shot, "imp": ref_imp, "iterative": ref_iterative, "agp": ref_agp, "ocp": ref_ocp}


def _near_a_jump(t, start=0.2, end=1.0, steps=3, eps=1e-9):
    """True when t sits on an iterative jump point, where float rounding may pick either side."""
    return any(abs(t - (start + k * (end - start) / steps)) < eps for k in range(steps))


# ---- each schedule matches its formula ------------------------------------------------------

@pytest.mark.parametrize("s_i,s_f", PAIRS)
def test_one_shot_matches_formula(s_i, s_f):
    for t in TS:
        assert schedules.one_shot(t, s_i, s_f) == ref_one_shot(t, s_i, s_f), t
    assert schedules.one_shot(0.399, s_i, s_f) == s_i
    assert schedules.one_shot(0.4, s_i, s_f) == s_f


@pytest.mark.parametrize("start", [0.0, 0.4, 0.75, 1.0])
def test_one_shot_start_is_settable(start):
    for t in TS:
        assert schedules.one_shot(t, 0.1, 0.8, start=start) == ref_one_shot(t, 0.1, 0.8, start=start), t
    assert schedules.one_shot(1.0, 0.1, 0.8, start=start) == 0.8


@pytest.mark.parametrize("s_i,s_f", PAIRS)
@pytest.mark.parametrize("steps", [1, 3, 5])
def test_iterative_matches_formula(s_i, s_f, steps):
    for t in TS:
        if _near_a_jump(t, steps=steps):
            continue
        assert schedules.iterative(t, s_i, s_f, prune_steps=steps) == pytest.approx(
            ref_iterative(t, s_i, s_f, steps=steps), abs=1e-12), t


def test_iterative_default_steps_values():
    # Paper default: start 0.2, three equal jumps at 0.2, 0.2 + 0.8/3, 0.2 + 1.6/3.
    s_i, s_f = 0.2, 0.5
    assert schedules.iterative(0.0, s_i, s_f) == s_i
    assert schedules.iterative(0.19, s_i, s_f) == s_i
    assert schedules.iterative(0.2, s_i, s_f) == pytest.approx(0.3)  # the first jump is at start
    assert schedules.iterative(0.21, s_i, s_f) == pytest.approx(0.3)
    assert schedules.iterative(0.47, s_i, s_f) == pytest.approx(0.4)
    assert schedules.iterative(0.74, s_i, s_f) == pytest.approx(0.5)
    assert schedules.iterative(0.99, s_i, s_f) == pytest.approx(0.5)
    # exactly three distinct values above s_i over the round
    values = {round(schedules.iterative(t, s_i, s_f), 12) for t in TS}
    assert len(values) == 4


def test_iterative_window_is_settable():
    for t in TS:
        if _near_a_jump(t, start=0.1, end=0.9, steps=4):
            continue
        assert schedules.iterative(t, 0.0, 0.8, start=0.1, end=0.9, prune_steps=4) == pytest.approx(
            ref_iterative(t, 0.0, 0.8, start=0.1, end=0.9, steps=4), abs=1e-12), t


@pytest.mark.parametrize("s_i,s_f", PAIRS)
def test_agp_matches_formula(s_i, s_f):
    for t in TS:
        assert schedules.agp(t, s_i, s_f) == pytest.approx(ref_agp(t, s_i, s_f), abs=1e-12), t
    assert schedules.agp(0.0, s_i, s_f) == pytest.approx(s_i, abs=1e-15)
    assert schedules.agp(0.2, s_i, s_f) == pytest.approx(s_i, abs=1e-15)


def test_agp_window_is_settable():
    for t in TS:
        assert schedules.agp(t, 0.1, 0.7, start=0.3, end=0.8) == pytest.approx(
            ref_agp(t, 0.1, 0.7, start=0.3, end=0.8), abs=1e-12), t
    assert schedules.agp(0.8, 0.1, 0.7, start=0.3, end=0.8) == 0.7
    assert schedules.agp(0.9, 0.1, 0.7, start=0.3, end=0.8) == 0.7


@pytest.mark.parametrize("s_i,s_f", PAIRS)
def test_ocp_matches_paper_eq1(s_i, s_f):
    for t in TS:
        assert schedules.ocp(t, s_i, s_f) == pytest.approx(ref_ocp(t, s_i, s_f), rel=1e-12, abs=1e-12), t


def test_ocp_known_values():
    # The docstring's worked value, and the start of the round: not exactly s_i (eq. 1 at t=0).
    assert schedules.ocp(0.5, 0.0, 0.9) == pytest.approx(0.792815, abs=1e-6)
    at_zero = 0.9 * (1 + math.exp(-9)) / (1 + math.exp(5))
    assert schedules.ocp(0.0, 0.0, 0.9) == pytest.approx(at_zero, rel=1e-12)
    assert 0.0 < schedules.ocp(0.0, 0.0, 0.9) < 0.01


@pytest.mark.parametrize("alpha,beta", [(14.0, 6.0), (10.0, 5.0), (20.0, 3.0), (5.0, 2.5)])
def test_ocp_alpha_beta_settable_and_change_the_value(alpha, beta):
    for t in TS:
        assert schedules.ocp(t, 0.2, 0.8, alpha=alpha, beta=beta) == pytest.approx(
            ref_ocp(t, 0.2, 0.8, alpha=alpha, beta=beta), rel=1e-12, abs=1e-12), t
    assert schedules.ocp(0.3, 0.2, 0.8, alpha=alpha, beta=beta) != pytest.approx(
        schedules.ocp(0.3, 0.2, 0.8), rel=1e-6)
    assert schedules.ocp(1.0, 0.2, 0.8, alpha=alpha, beta=beta) == 0.8


def test_fasterai_beta_6_is_later_than_paper_beta_5():
    # A larger beta shifts the curve right: less sparsity early in the round.
    assert schedules.ocp(0.3, 0.0, 0.9, beta=6.0) < schedules.ocp(0.3, 0.0, 0.9, beta=5.0)


# ---- shared properties --------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("s_i,s_f", PAIRS + [(0.0, 0.956), (0.488, 0.5904)])
def test_exactly_s_f_at_the_end(name, s_i, s_f):
    assert schedules.get(name)(1.0, s_i, s_f) == s_f  # exact, not approximate


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("s_i,s_f", PAIRS)
def test_monotone_non_decreasing_and_bounded(name, s_i, s_f):
    fn = schedules.get(name)
    values = [fn(t, s_i, s_f) for t in TS]
    for a, b in zip(values, values[1:]):
        assert b >= a
    assert all(s_i - 1e-12 <= v <= s_f + 1e-12 for v in values)


@pytest.mark.parametrize("name", NAMES)
def test_endpoints_against_reference(name):
    fn, ref = schedules.get(name), REFERENCES[name]
    for s_i, s_f in PAIRS:
        assert fn(0.0, s_i, s_f) == pytest.approx(ref(0.0, s_i, s_f), abs=1e-12)
        assert fn(1.0, s_i, s_f) == pytest.approx(ref(1.0, s_i, s_f), abs=1e-12)


@pytest.mark.parametrize("name", ["one_shot", "iterative", "agp"])
def test_windowed_schedules_start_at_s_i(name):
    assert schedules.get(name)(0.0, 0.3, 0.7) == 0.3


def test_paper_defaults_are_the_keyword_defaults():
    def defaults(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items()
                if p.default is not inspect.Parameter.empty}

    assert defaults(schedules.one_shot) == {"start": 0.4}
    assert defaults(schedules.iterative) == {"start": 0.2, "end": 1.0, "prune_steps": 3}
    assert defaults(schedules.agp) == {"start": 0.2, "end": 1.0}
    assert defaults(schedules.ocp) == {"alpha": 14.0, "beta": 5.0}
    assert defaults(schedules.imp) == {}
    # the registry's parameter dataclasses (what the CLI and configs use) say the same
    for name in NAMES:
        entry = schedules.SCHEDULES.get(name)
        assert dataclasses.asdict(entry.params()) == defaults(entry.fn), name
    # and the defaults are what the functions use
    assert schedules.ocp(0.37, 0.1, 0.9) == schedules.ocp(0.37, 0.1, 0.9, alpha=14.0, beta=5.0)
    assert schedules.agp(0.37, 0.1, 0.9) == schedules.agp(0.37, 0.1, 0.9, start=0.2, end=1.0)
    assert schedules.one_shot(0.39, 0.1, 0.9) == 0.1 and schedules.one_shot(0.4, 0.1, 0.9) == 0.9


# ---- registry -------------------------------------------------------------------------------

def test_registry_get_returns_the_functions():
    assert schedules.get("imp") is schedules.imp
    assert schedules.get("one_shot") is schedules.one_shot
    assert schedules.get("iterative") is schedules.iterative
    assert schedules.get("agp") is schedules.agp
    assert schedules.get("ocp") is schedules.ocp


def test_registry_unknown_name_lists_choices():
    with pytest.raises(LthError) as info:
        schedules.get("nope")
    message = str(info.value)
    assert "nope" in message
    for name in NAMES:
        assert name in message


def test_register_adds_a_schedule():
    name = "test_linear_schedule"
    try:
        @schedules.SCHEDULES.register(name)
        def linear(t, s_i, s_f):
            return s_i + (s_f - s_i) * t

        assert schedules.get(name) is linear
        assert schedules.get(name)(0.5, 0.0, 0.8) == pytest.approx(0.4)
        with pytest.raises(LthError) as info:
            schedules.get("still_nope")
        assert name in str(info.value)
        with pytest.raises(LthError, match="registered twice"):
            schedules.SCHEDULES.register(name)(linear)  # a name is registered once
    finally:
        schedules.SCHEDULES.entries.pop(name, None)
    with pytest.raises(LthError):
        schedules.get(name)


# ---- round sparsities -------------------------------------------------------------------

def test_round_sparsities_paper_setting():
    s = schedules.round_sparsities(14, 0.2)
    assert len(s) == 14
    assert s[0] == pytest.approx(0.2)
    assert s[1] == pytest.approx(0.36)
    assert s[-1] == pytest.approx(0.956, abs=5e-4)
    assert s[-1] == pytest.approx(1 - 0.8 ** 14, rel=1e-12)
    assert all(b > a for a, b in zip(s, s[1:]))


@pytest.mark.parametrize("final,rounds", [(0.956, 14), (0.9, 5), (0.5, 1), (0.99, 20), (0.2, 3)])
def test_rate_for_inverts_round_sparsities(final, rounds):
    rate = schedules.rate_for(final, rounds)
    assert 0.0 < rate < 1.0
    assert schedules.round_sparsities(rounds, rate)[-1] == pytest.approx(final, rel=1e-12)


@pytest.mark.parametrize("rate,rounds", [(0.2, 14), (0.5, 4), (0.1, 1)])
def test_round_sparsities_inverts_rate_for(rate, rounds):
    final = schedules.round_sparsities(rounds, rate)[-1]
    assert schedules.rate_for(final, rounds) == pytest.approx(rate, rel=1e-12)
