"""The C kernel of raw SVI fit errors (``_fit_errors.c``) against the numpy path it
shadows, :func:`errors_from_jacobians` of :func:`svi.vol_jacobian_rows` at the slices'
quotes padded to the longest (:func:`errors_at_quotes`): random chains of every size
(none to fifty quotes a slice), slices singular by construction, NaN and infinite
inputs, unquoted points (infinite half spreads: numpy's padding), overflow, bad buffers;
and the fallback forced.

The two agree on which slices get errors; their values agree to rounding amplified by
the conditioning of ``J^T J`` (summation orders differ: numpy's are OpenBLAS's), so the
tolerance is ``COND_RTOL`` times each slice's condition number.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from streamer.core import fit_errors
from streamer.core.fit_errors import errors_at_quotes, svi_errors_rows
from streamer.core.models.svi import vol_jacobian_rows
from streamer.core.rows import padded, quoted_mask

FloatArray = npt.NDArray[np.float64]
NATIVE = fit_errors._NATIVE
needs_native = pytest.mark.skipif(NATIVE is None, reason="the C kernel was not built")
#: relative agreement per unit of cond(J^T J): a few ulps of J^T J, amplified
COND_RTOL = 1e-14


class Chain:
    """Slices' quotes one after another (k, half spreads), their sizes, t and params."""

    def __init__(self, rng: np.random.Generator, sizes: list[int]) -> None:
        s = len(sizes)
        self.sizes = sizes
        self.k = np.concatenate([np.sort(rng.uniform(rng.uniform(-0.8, -0.05),
                                                     rng.uniform(0.05, 0.6), n))
                                 for n in sizes] + [np.zeros(0)])
        self.h = rng.uniform(0.0005, 0.02, self.k.size)
        self.t = rng.uniform(0.002, 2.0, s)
        self.params = np.stack([rng.uniform(0.0005, 0.02, s), rng.uniform(0.01, 0.3, s),
                                rng.uniform(-0.9, 0.9, s), rng.uniform(-0.1, 0.1, s),
                                rng.uniform(0.02, 0.5, s)], axis=1)

    def cell(self, slice_: int, quote: int) -> int:
        """Index in k and h of quote ``quote`` of slice ``slice_``."""
        return sum(self.sizes[:slice_]) + quote

    def reference(self) -> tuple[FloatArray, FloatArray]:
        return errors_at_quotes(
            lambda x: vol_jacobian_rows(x, self.t, self.params[..., None]), self.k, self.h,
            self.sizes)

    def native(self) -> tuple[FloatArray, FloatArray]:
        assert NATIVE is not None
        se, atm = np.empty((self.t.size, 5)), np.empty(self.t.size)
        NATIVE(self.k, self.h, np.array(self.sizes, np.int64), self.t, self.params, se, atm)
        return se, atm

    def condition(self) -> FloatArray:
        """cond(J^T J) per slice (inf where it is not finite)."""
        quoted = quoted_mask(self.sizes, max(self.sizes, default=0))
        h = padded([self.h], quoted, np.inf)
        with np.errstate(all="ignore"):
            jac = vol_jacobian_rows(padded([self.k], quoted, 0.0), self.t,
                                    self.params[..., None])
            ok = np.isfinite(h)
            scaled = np.where(ok[..., None], jac / np.where(ok, h, 1.0)[..., None], 0.0)
            normal = np.matmul(scaled.transpose(0, 2, 1), scaled)
            good = np.all(np.isfinite(normal), axis=(1, 2))
            normal[~good] = np.eye(5)
            eig = np.linalg.eigvalsh(normal)
            cond: FloatArray = np.where(good, eig[:, -1] / np.abs(eig[:, 0]), np.inf)
        return cond


def _assert_agree(chain: Chain) -> list[bool]:
    """The kernel gives errors to exactly the slices numpy does, equal to rounding times
    their conditioning; returns which slices have errors."""
    (se, atm), (want_se, want_atm) = chain.native(), chain.reference()
    np.testing.assert_array_equal(np.isnan(atm), np.isnan(want_atm))
    np.testing.assert_array_equal(np.isnan(se), np.isnan(want_se))
    has = ~np.isnan(want_atm)
    rtol = np.maximum(COND_RTOL * chain.condition(), 1e-13)[has]
    assert np.all(np.abs(atm[has] - want_atm[has]) <= rtol * want_atm[has])
    assert np.all(np.abs(se[has] - want_se[has]) <= rtol[:, None] * want_se[has])
    result: list[bool] = has.tolist()
    return result


@needs_native
@pytest.mark.parametrize("seed", range(6))
def test_random_chains_of_every_size_agree_with_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(0, 51, 12)] + [0, 1, 2, 3, 4, 5, 6, 7]
    has = _assert_agree(Chain(rng, sizes))
    assert sum(has) >= 8  # most slices of more than 5 quotes have error bars
    assert not any(has[-8:-2])  # no more quotes than the 5 parameters: none


@needs_native
def test_slices_shaped_like_the_pipelines_all_get_errors_that_agree() -> None:
    """9 slices of 9-50 quotes (the bundled head's shape): every one has error bars."""
    assert all(_assert_agree(Chain(np.random.default_rng(11), [10, 20, 35, 50, 12, 44, 28,
                                                                17, 9])))


@needs_native
def test_singular_slices_get_no_errors_in_either_path() -> None:
    """Quotes that cannot separate the parameters: all at one k, at two k, b = 0 (a flat
    smile: rho, m and sigma do nothing); and sigma = 0 at a quote (a kink: NaN slope)."""
    chain = Chain(np.random.default_rng(3), [20] * 5)
    chain.k[:20] = 0.1
    chain.k[20:40] = np.where(np.arange(20) % 2 == 0, -0.2, 0.1)
    chain.params[2, 1] = 0.0
    chain.params[3, 3], chain.params[3, 4], chain.k[chain.cell(3, 5)] = 0.05, 0.0, 0.05
    assert _assert_agree(chain) == [False, False, False, False, True]


@needs_native
@pytest.mark.parametrize("where", ["k_quoted", "k_unquoted", "param", "t", "w<0"])
def test_a_nan_input_or_negative_variance_makes_only_its_slice_nan(where: str) -> None:
    chain = Chain(np.random.default_rng(7), [15, 12, 30])
    if where == "k_quoted":
        chain.k[chain.cell(1, 3)] = np.nan
    elif where == "k_unquoted":  # numpy checks every row of the Jacobian, padding too
        chain.k[chain.cell(1, 3)], chain.h[chain.cell(1, 3)] = np.nan, np.inf
    elif where == "param":
        chain.params[1, 2] = np.nan
    elif where == "t":
        chain.t[1] = np.nan
    else:
        chain.params[1, 0] = -1.0
    assert _assert_agree(chain) == [True, False, True]


@needs_native
def test_non_finite_and_non_positive_half_spreads() -> None:
    """+inf, -inf and NaN half spreads are not quoted (numpy's padding); a quoted one of
    0 or below leaves its slice without errors; unquoted points change nothing else."""
    chain = Chain(np.random.default_rng(9), [25] * 5)
    unquoted = [chain.cell(0, 2), chain.cell(0, 7), chain.cell(1, 4), chain.cell(1, 9)]
    chain.h[unquoted] = [-np.inf, np.inf, np.nan, np.inf]
    chain.h[chain.cell(2, 3)] = 0.0
    chain.h[chain.cell(3, 5)] = -0.01
    assert _assert_agree(chain) == [True, True, False, False, True]
    atm = chain.native()[1]
    first = np.isfinite(chain.h[:25])
    chain.k, chain.h, chain.sizes = chain.k[:25][first], chain.h[:25][first], [int(first.sum())]
    chain.t, chain.params = chain.t[:1], chain.params[:1]
    np.testing.assert_allclose(chain.native()[1], atm[:1], rtol=1e-12)


@needs_native
def test_an_overflowing_normal_matrix_is_no_error_bar_in_either_path() -> None:
    """Half spreads so small that J^T J overflows: NaN (numpy's eigvalsh used to raise)."""
    chain = Chain(np.random.default_rng(2), [20, 20])
    chain.h[:20] = 1e-170
    assert _assert_agree(chain) == [False, True]


@needs_native
def test_no_slices_and_bad_buffers() -> None:
    assert NATIVE is not None
    se, atm = np.empty((0, 5)), np.empty(0)
    NATIVE(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 5)),
           se, atm)
    c = Chain(np.random.default_rng(1), [8, 9])
    sizes = np.array(c.sizes, np.int64)
    out = np.empty((2, 5)), np.empty(2)
    with pytest.raises(ValueError, match="sizes"):
        NATIVE(c.k, c.h, np.array([8, 10]), c.t, c.params, *out)
    with pytest.raises(ValueError, match="sizes"):
        NATIVE(c.k, c.h, np.array([-1, 18]), c.t, c.params, *out)
    with pytest.raises(ValueError, match="half_spread"):
        NATIVE(c.k, c.h[:-1].copy(), sizes, c.t, c.params, *out)
    with pytest.raises(ValueError, match="t"):
        NATIVE(c.k, c.h, sizes, c.t.astype(np.float32), c.params, *out)
    with pytest.raises(ValueError, match="params"):
        NATIVE(c.k, c.h, sizes, c.t, c.params[:, :4].copy(), *out)
    with pytest.raises(ValueError, match="se"):
        NATIVE(c.k, c.h, sizes, c.t, c.params, np.empty((2, 4)), out[1])
    with pytest.raises(TypeError):
        NATIVE(c.k, c.h)


def test_the_forced_fallback_is_the_numpy_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit_errors, "_NATIVE", None)
    chain = Chain(np.random.default_rng(5), [0, 3, 6, 18, 40])
    se, atm = svi_errors_rows(chain.k, chain.h, chain.sizes, chain.t, chain.params)
    want_se, want_atm = chain.reference()
    np.testing.assert_array_equal(se, want_se)
    np.testing.assert_array_equal(atm, want_atm)
    assert np.isfinite(atm[2:]).all()
    assert np.isnan(atm[:2]).all()


@needs_native
def test_the_wrapper_takes_the_kernel_and_any_layout() -> None:
    """svi_errors_rows with strided views, a list of sizes and params of shape (s, 5, 1)."""
    chain = Chain(np.random.default_rng(6), [12, 30, 7])
    strided = np.repeat(chain.h, 2)[::2]
    se, atm = svi_errors_rows(chain.k, strided, chain.sizes, chain.t, chain.params[..., None])
    want = chain.native()
    np.testing.assert_array_equal(se, want[0])
    np.testing.assert_array_equal(atm, want[1])
