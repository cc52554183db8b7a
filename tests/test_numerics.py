"""Properties of the numerics contract (golden/numerics.py).

Hypothesis runs derandomized (fixed seed from the test's name), so CI is deterministic;
plain random tests print their seed.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ternac.golden import numerics
from ternac.golden.numerics import (ACT_MAX, ACT_MIN, M_BITS, S_MAX, absmean_ternarize, acc_width,
                             check_ternary, dyadic, quantize_act, relu, requantize,
                             round_half_up_shift, ternary_matvec)

PROPS = settings(derandomize=True, max_examples=200, deadline=None)

#: The largest fan-in ternac supports (sizes the widest accumulator).
MAX_FAN_IN = 4096


def fits_signed(v: int, bits: int) -> bool:
    return -(1 << (bits - 1)) <= v <= (1 << (bits - 1)) - 1


# --- requantize: rounding and saturation ------------------------------------------------

@pytest.mark.parametrize("s", [1, 2, 7, 14])
def test_requantize_ties_round_half_up(s):
    # acc * m = 2.5 * 2^s with m = 5 * 2^(s-1) (< 2^16 for s <= 14), acc = +-1
    m_ = 5 << (s - 1)
    assert requantize(torch.tensor([1]), m_, s).tolist() == [3]
    assert requantize(torch.tensor([-1]), m_, s).tolist() == [-2]


def test_requantize_ties_with_large_shift():
    # acc * m = +-2.5 * 2^20 with m = 5, acc = +-2^19
    acc = torch.tensor([1 << 19, -(1 << 19), 3 << 19, -(3 << 19)])
    assert requantize(acc, 5, 20).tolist() == [3, -2, 8, -7]  # 2.5, -2.5, 7.5, -7.5


@given(acc=st.integers(-(1 << 30), 1 << 30), m=st.integers(0, (1 << M_BITS) - 1),
       s=st.integers(0, S_MAX))
@PROPS
def test_requantize_matches_exact_rational(acc, m, s):
    # floor(acc*m / 2^s + 1/2), computed with Python's exact integers, then saturated.
    want = (2 * acc * m + (1 << s)) // (1 << (s + 1)) if s else acc * m
    want = max(ACT_MIN, min(ACT_MAX, want))
    assert requantize(torch.tensor([acc]), m, s).item() == want


def test_requantize_saturates_at_127():
    acc = torch.tensor([10_000, -10_000, 127, -127, 128, -128, 0])
    assert requantize(acc, 1, 0).tolist() == [127, -127, 127, -127, 127, -127, 0]
    # -128 is never produced: the range is symmetric
    assert requantize(torch.tensor([-(1 << 30)]), (1 << M_BITS) - 1, 0).item() == -127


def test_sat_default_is_symmetric_int8():
    assert numerics.sat(torch.tensor([-1000, -128, -127, 0, 127, 128, 1000])).tolist() == \
        [-127, -127, -127, 0, 127, 127, 127]
    assert numerics.sat(torch.tensor([-5, 5]), -3, 4).tolist() == [-3, 4]


def test_requantize_rejects_bad_m_and_s():
    with pytest.raises(ValueError, match="does not fit 16 unsigned bits"):
        requantize(torch.tensor([1]), 1 << M_BITS, 0)
    with pytest.raises(ValueError, match="does not fit"):
        requantize(torch.tensor([1]), -1, 0)
    with pytest.raises(ValueError, match="outside"):
        requantize(torch.tensor([1]), 1, S_MAX + 1)


def test_round_half_up_shift():
    v = torch.tensor([5, -5, 6, -6, 7, -7, 4, -4])
    assert round_half_up_shift(v, 1).tolist() == [3, -2, 3, -3, 4, -3, 2, -2]
    assert round_half_up_shift(v, 0).tolist() == v.tolist()


def test_relu_keeps_dtype():
    x = torch.tensor([-3, 0, 5], dtype=torch.int64)
    y = relu(x)
    assert y.tolist() == [0, 0, 5] and y.dtype == torch.int64


# --- dyadic -----------------------------------------------------------------------------

@given(scale=st.floats(min_value=2.0 ** (M_BITS - 1 - S_MAX), max_value=65535.0,
                       allow_nan=False, allow_infinity=False))
@PROPS
def test_dyadic_relative_error(scale):
    m, s = dyadic(scale)
    assert 0 < m < (1 << M_BITS) and 0 <= s <= S_MAX
    assert abs(m / 2 ** s - scale) / scale < 2.0 ** -15


@pytest.mark.parametrize("scale", [1.0, 0.5, 2 ** -20, 0.123456, 1000.25, 65535.0])
def test_dyadic_keeps_16_significant_bits(scale):
    m, s = dyadic(scale)
    # The largest shift that keeps m in 16 bits: m has its top bit set unless s = S_MAX.
    assert m >= 1 << (M_BITS - 1) or s == S_MAX
    assert round(scale * 2 ** (s + 1)) >= 1 << M_BITS or s == S_MAX


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), -float("inf"),
                                   65536.0, 1e9, 2.0 ** -(S_MAX + 1), 1e-30])
def test_dyadic_range_errors(scale):
    with pytest.raises(ValueError):
        dyadic(scale)


# --- acc_width --------------------------------------------------------------------------

def test_acc_width_largest_fan_in_holds_extremes():
    k = MAX_FAN_IN
    w = acc_width(k)
    x = torch.full((k,), ACT_MAX, dtype=torch.int8)
    hi = ternary_matvec(torch.ones(1, k, dtype=torch.int8), x).item()
    lo = ternary_matvec(-torch.ones(1, k, dtype=torch.int8), x).item()
    assert hi == k * ACT_MAX and lo == -k * ACT_MAX
    assert fits_signed(hi, w) and fits_signed(lo, w)
    assert not fits_signed(hi, w - 1)
    assert w == 20


@pytest.mark.parametrize("k", [1, 2, 3, 64, 127, 128, 129, 512, 1000, 2049, 4096])
def test_acc_width_is_exact(k):
    # acc_width(k) bits hold +-k*127, acc_width(k) - 1 bits do not (not one bit to spare).
    w = acc_width(k)
    assert fits_signed(k * ACT_MAX, w) and fits_signed(-k * ACT_MAX, w)
    assert not fits_signed(k * ACT_MAX, w - 1)


def test_acc_width_all_fan_ins_exact():
    for k in range(1, MAX_FAN_IN + 1):
        w = acc_width(k)
        assert (1 << (w - 2)) - 1 < k * ACT_MAX <= (1 << (w - 1)) - 1, k


def test_acc_width_rejects_zero_fan_in():
    with pytest.raises(ValueError, match="fan-in"):
        acc_width(0)


# --- ternary_matvec ---------------------------------------------------------------------

def loop_matvec(t: list[list[int]], x: list[int]) -> list[int]:
    out = []
    for row in t:
        acc = 0
        for ti, xi in zip(row, x):
            if ti == 1:
                acc += xi
            elif ti == -1:
                acc -= xi
        out.append(acc)
    return out


@pytest.mark.parametrize("trit", [1, -1, 0])
@pytest.mark.parametrize("act", [ACT_MAX, ACT_MIN])
def test_ternary_matvec_extremes(trit, act):
    k, n = 300, 5
    t = torch.full((n, k), trit, dtype=torch.int8)
    x = torch.full((k,), act, dtype=torch.int8)
    got = ternary_matvec(t, x)
    assert got.dtype == torch.int64
    assert got.tolist() == loop_matvec(t.tolist(), x.tolist()) == [trit * act * k] * n


def test_ternary_matvec_alternating_extremes():
    k = 257
    t = torch.tensor([[1 if i % 2 else -1 for i in range(k)]], dtype=torch.int8)
    x = torch.tensor([ACT_MAX if i % 2 else ACT_MIN for i in range(k)], dtype=torch.int8)
    assert ternary_matvec(t, x).tolist() == loop_matvec(t.tolist(), x.tolist()) == [k * ACT_MAX]


def test_ternary_matvec_random_vs_loop():
    seed = 1234
    print(f"seed={seed}")
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(-1, 2, (17, 93), generator=g, dtype=torch.int8)
    x = torch.randint(ACT_MIN, ACT_MAX + 1, (4, 93), generator=g, dtype=torch.int8)
    got = ternary_matvec(t, x)
    assert got.shape == (4, 17)
    for b in range(4):
        assert got[b].tolist() == loop_matvec(t.tolist(), x[b].tolist())


# --- quantize_act -----------------------------------------------------------------------

def test_quantize_act_clamps_symmetric():
    x = torch.tensor([1e6, -1e6, 127.4, -127.4, 127.6, -127.6, 0.0, 0.5, 1.5, -0.5])
    q = quantize_act(x, 1.0)
    assert q.dtype == torch.int8
    # torch.round: half to even
    assert q.tolist() == [127, -127, 127, -127, 127, -127, 0, 0, 2, 0]
    assert int(q.min()) >= -127  # never -128


@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=50),
       st.floats(1e-3, 1e3))
@PROPS
def test_quantize_act_range_and_error(xs, scale):
    x = torch.tensor(xs, dtype=torch.float64)
    q = quantize_act(x, scale)
    assert int(q.min()) >= ACT_MIN and int(q.max()) <= ACT_MAX
    inside = x.abs() <= ACT_MAX * scale
    err = (q.to(torch.float64) * scale - x).abs()
    assert bool((err[inside] <= scale / 2 * (1 + 1e-9)).all())


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_quantize_act_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="positive and finite"):
        quantize_act(torch.zeros(3), scale)


# --- absmean_ternarize and check_ternary -------------------------------------------------

def test_absmean_known_input():
    w = torch.tensor([[0.9, -0.2, 0.0, -1.5]])  # mean |w| = 0.65
    t, gamma = absmean_ternarize(w)
    assert math.isclose(gamma, 0.65 + numerics.ABSMEAN_EPS, rel_tol=1e-6)
    # w / gamma = 1.38, -0.31, 0, -2.31 -> 1, 0, 0, -1
    assert t.dtype == torch.int8 and t.tolist() == [[1, 0, 0, -1]]


def test_absmean_already_ternary_is_fixed_point():
    w = torch.tensor([1.0, -1.0, 1.0, -1.0])
    t, gamma = absmean_ternarize(w)
    assert t.tolist() == [1, -1, 1, -1] and math.isclose(gamma, 1.0 + 1e-5, rel_tol=1e-6)


def test_absmean_all_zero_uses_eps():
    t, gamma = absmean_ternarize(torch.zeros(8))
    assert gamma == numerics.ABSMEAN_EPS and t.tolist() == [0] * 8


@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=64))
@PROPS
def test_absmean_properties(ws):
    w = torch.tensor(ws)
    t, gamma = absmean_ternarize(w)
    assert set(t.unique().tolist()) <= {-1, 0, 1}
    assert math.isclose(gamma, float(w.abs().mean()) + numerics.ABSMEAN_EPS, rel_tol=1e-6)
    # the sign is kept wherever a trit is nonzero
    nz = t != 0
    assert bool((torch.sign(w[nz]) == t[nz].to(w.dtype)).all())


@pytest.mark.parametrize("bad", [2, 0.5, float("nan"), -2, float("inf")])
def test_check_ternary_rejects(bad):
    dtype = torch.float32 if isinstance(bad, float) else torch.int64
    t = torch.tensor([0, 1, bad, -1], dtype=dtype)
    with pytest.raises(ValueError, match="not ternary"):
        check_ternary(t, "w")


def test_check_ternary_names_element():
    with pytest.raises(ValueError, match=r"w is not ternary: element \(1, 0\) is 2"):
        check_ternary(torch.tensor([[0, 1], [2, -1]]), "w")


def test_check_ternary_accepts_and_converts():
    out = check_ternary(torch.tensor([1.0, 0.0, -1.0]))
    assert out.dtype == torch.int8 and out.tolist() == [1, 0, -1]
