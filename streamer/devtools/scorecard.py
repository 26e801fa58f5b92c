"""Score published surfaces of a real chain against Deribit's marks and bid/ask IVs.

``python -m streamer.devtools.scorecard FILE --model svi|sabr|ssvi|heston|all
[--per-snapshot] [--json] [--baselines scipy_svi,ql_sabr,ql_heston,deribit_mid]``

``FILE`` is a tick file written by :mod:`streamer.devtools.real_chains`, with its
``.ref.csv.gz`` beside it. Each model's surfaces come from the real path: a subprocess
``streamer replay FILE --sink stdout --model M``, read back with
:class:`streamer.client.Surface`. The final surface of each snapshot (the last one
published before the next snapshot's quotes start) is scored slice by slice on the
snapshot's scored quotes:

- OTM by the reference forward, with a bid, a mark, and a strike inside the range of
  the expiry's two-sided OTM strikes (no extrapolation is scored);
- RMSE of model vol − mark (vol points), the share of two-sided quotes whose model vol is
  inside [bid IV, ask IV], the worst |model − mark|, and |model ATM − market ATM mark| (the
  marks interpolated linearly in k = ln(K/F) to k = 0);
- coverage: expiries with >= 8 two-sided OTM quotes against those published (usable).

Figures are medians over slices (RMSE, ATM), pooled shares (band) and maxima (worst), for
all slices and per expiry bucket (< 1 d, 1-7 d, 7-30 d, 30-90 d, > 90 d). ``atm_max_any``
is the largest ATM error of any slice of ANY published surface against the marks of the
snapshot it is as of (the "never publish a vol the market is not showing" check).

Baselines on the same quotes, fitted slice by slice on two-sided OTM mid IVs (mean of bid
and ask IV): ``scipy_svi`` (raw SVI, scipy ``least_squares``, 9 starts), ``ql_sabr``
(QuantLib ``SABRInterpolation``, beta = 1 as ours), ``ql_heston`` (QuantLib Heston, one
per snapshot over all its expiries, Levenberg-Marquardt on mid prices) and
``deribit_mid`` (the mids themselves: how far Deribit's own mids are from its marks).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.client.slices import Slice
from streamer.client.surface import Surface
from streamer.core.implied_vol import implied_vol
from streamer.tickfile import TickFileWriter, read_tickfile

FloatArray = npt.NDArray[np.float64]
YEAR_MS = 365.0 * 86_400_000.0
DAY_MS = 86_400_000.0
MODELS = ("svi", "sabr", "ssvi", "heston")
BASELINES = ("scipy_svi", "ql_sabr", "ql_heston", "deribit_mid")
#: Expiry buckets (days to expiry): label and upper bound.
BUCKETS = (("<1d", 1.0), ("1-7d", 7.0), ("7-30d", 30.0), ("30-90d", 90.0), (">90d", math.inf))
#: An expiry with this many two-sided OTM quotes must be published.
MIN_TWO_SIDED = 8
#: Quotes a baseline slice fit needs.
MIN_FIT_QUOTES = 5

VolFn = Callable[[FloatArray], FloatArray]  # strikes -> decimal vols


def bucket_of(days: float) -> str:
    """The expiry bucket of ``days`` to expiry."""
    return next(label for label, upper in BUCKETS if days < upper)


# --- the reference marks ------------------------------------------------------------------

@dataclass(frozen=True)
class ExpiryQuotes:
    """One expiry of one snapshot: the scored quotes and the market's ATM mark."""

    snapshot_ts_ms: int
    expiry_ts_ms: int
    t: float
    forward: float
    strike: FloatArray  # scored quotes (see the module docstring)
    is_call: npt.NDArray[np.bool_]
    mark: FloatArray
    bid_iv: FloatArray
    ask_iv: FloatArray  # NaN: no ask
    atm_mark: float
    n_two_sided: int

    @property
    def days(self) -> float:
        """Days to expiry."""
        return self.t * 365.0

    @property
    def two_sided(self) -> npt.NDArray[np.bool_]:
        """Scored quotes with an ask as well as a bid."""
        return np.isfinite(self.ask_iv)

    @property
    def mid(self) -> FloatArray:
        """Mid IV (NaN without an ask)."""
        return np.asarray(0.5 * (self.bid_iv + self.ask_iv), np.float64)


@dataclass(frozen=True)
class Reference:
    """Every snapshot of a ``.ref.csv.gz``: ``{snapshot ts: {expiry: ExpiryQuotes}}``."""

    snapshots: dict[int, dict[int, ExpiryQuotes]]

    @property
    def times(self) -> list[int]:
        """Snapshot times, ascending."""
        return sorted(self.snapshots)

    def as_of(self, ts_ms: int) -> int | None:
        """The snapshot a surface at ``ts_ms`` is as of (the latest not after it)."""
        earlier = [t for t in self.times if t <= ts_ms]
        return earlier[-1] if earlier else None


def ref_path(tick_path: Path) -> Path:
    """The reference file beside a tick file."""
    name = tick_path.name.removesuffix(".gz").removesuffix(".ndjson")
    return tick_path.with_name(f"{name}.ref.csv.gz")


def load_reference(path: Path) -> Reference:
    """Read a reference file (columns: :data:`streamer.devtools.real_chains.REF_COLUMNS`)."""
    def num(text: str) -> float:
        return float(text) if text else math.nan

    rows: dict[tuple[int, int], list[list[float]]] = {}
    with gzip.open(path, "rt", newline="") as handle:
        for r in csv.DictReader(handle):
            key = (int(r["snapshot_ts_ms"]), int(r["expiry_ts_ms"]))
            rows.setdefault(key, []).append(
                [float(r["strike"]), float(r["is_call"]), float(r["forward"]),
                 num(r["mark_iv"]), num(r["bid_iv"]), num(r["ask_iv"])])
    snaps: dict[int, dict[int, ExpiryQuotes]] = {}
    for (ts, expiry), values in rows.items():
        quotes = _expiry_quotes(ts, expiry, np.array(values, np.float64))
        if quotes is not None:
            snaps.setdefault(ts, {})[expiry] = quotes
    return Reference(snaps)


def _expiry_quotes(ts: int, expiry: int, a: FloatArray) -> ExpiryQuotes | None:
    strike, call, fwd, mark, bid, ask = a.T
    forward = float(np.median(fwd))
    otm = np.where(call > 0.5, strike >= forward, strike < forward)
    two = otm & np.isfinite(bid) & np.isfinite(ask) & np.isfinite(mark)
    marked = otm & np.isfinite(mark)
    if not two.any() or marked.sum() < 2:
        return None
    lo, hi = strike[two].min(), strike[two].max()
    scored = otm & np.isfinite(bid) & np.isfinite(mark) & (strike >= lo) & (strike <= hi)
    k = np.log(strike[marked] / forward)
    order = np.argsort(k)
    atm = float(np.interp(0.0, k[order], mark[marked][order]))
    idx = np.flatnonzero(scored)
    idx = idx[np.argsort(strike[idx])]
    return ExpiryQuotes(ts, expiry, (expiry - ts) / YEAR_MS, forward, strike[idx],
                        call[idx] > 0.5, mark[idx], bid[idx], ask[idx], atm, int(two.sum()))


# --- scoring -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SliceScore:
    """One slice of one snapshot against the marks."""

    snapshot_ts_ms: int
    expiry_ts_ms: int
    days: float
    bucket: str
    n: int
    rmse_vp: float
    n_two_sided: int
    n_in_band: int
    worst_vp: float
    atm_vp: float
    status: str = ""


def score_vols(q: ExpiryQuotes, model_vol: FloatArray, atm_vol: float, status: str = ""
               ) -> SliceScore:
    """Score model vols at ``q``'s scored strikes (and its ATM vol) against the marks."""
    err = (model_vol - q.mark) * 100.0
    two = q.two_sided
    inside = two & (model_vol >= q.bid_iv) & (model_vol <= q.ask_iv)
    finite = np.isfinite(err)
    rmse = float(np.sqrt(np.mean(err[finite] ** 2))) if finite.all() and err.size else math.nan
    worst = float(np.max(np.abs(err))) if finite.all() and err.size else math.nan
    return SliceScore(q.snapshot_ts_ms, q.expiry_ts_ms, q.days, bucket_of(q.days), int(err.size),
                      rmse, int(two.sum()), int(inside.sum()), worst,
                      abs(atm_vol - q.atm_mark) * 100.0, status)


def score_slice(s: Slice, q: ExpiryQuotes) -> SliceScore:
    """A published slice at ``q``'s strikes; its ATM is the slice's own vol at k = 0."""
    with np.errstate(all="ignore"):
        vols = np.asarray(s.vol(q.strike), np.float64) if q.strike.size else np.zeros(0)
        atm = float(s.vol_k(np.zeros(1))[0])
    return score_vols(q, vols, atm, s.status)


@dataclass
class Summary:
    """Aggregates over a set of slice scores."""

    n_slices: int
    rmse_vp_median: float
    in_band_pct: float
    worst_vp: float
    atm_vp_median: float
    atm_vp_max: float

    @classmethod
    def of(cls, scores: Sequence[SliceScore]) -> Summary:
        """Median RMSE and ATM error, pooled in-band share, worst error (NaN when empty)."""
        def med(xs: Iterable[float]) -> float:
            v = [x for x in xs if math.isfinite(x)]
            return float(np.median(v)) if v else math.nan

        two = sum(s.n_two_sided for s in scores)
        worst = [s.worst_vp for s in scores if math.isfinite(s.worst_vp)]
        atm = [s.atm_vp for s in scores if math.isfinite(s.atm_vp)]
        failed = any(not math.isfinite(s.rmse_vp) and s.n for s in scores)
        return cls(len(scores), med(s.rmse_vp for s in scores if s.n),
                   100.0 * sum(s.n_in_band for s in scores) / two if two else math.nan,
                   math.inf if failed else (max(worst) if worst else math.nan),
                   med(atm), max(atm) if atm else math.nan)


@dataclass
class Card:
    """One model (or baseline) on one file."""

    name: str
    overall: Summary
    buckets: dict[str, Summary]
    eligible: int  # (snapshot, expiry) pairs with >= MIN_TWO_SIDED two-sided OTM quotes
    published: int  # ... of which a usable slice was published
    missing: list[str]
    atm_max_any: float = math.nan  # over every published surface (models only)
    n_surfaces: int = 0
    wall_s: float = math.nan
    cpu_s: float = math.nan
    timed_out: bool = False
    error: str = ""  # why the replay failed, if it did
    per_snapshot: dict[int, Summary] = field(default_factory=dict)
    slices: list[SliceScore] = field(default_factory=list)


def _card(name: str, scores: list[SliceScore], eligible: int, published: int,
          missing: list[str]) -> Card:
    buckets = {label: Summary.of([s for s in scores if s.bucket == label])
               for label, _ in BUCKETS}
    per = {ts: Summary.of([s for s in scores if s.snapshot_ts_ms == ts])
           for ts in sorted({s.snapshot_ts_ms for s in scores})}
    return Card(name, Summary.of(scores), buckets, eligible, published, missing,
                per_snapshot=per, slices=scores)


# --- models: the real replay path ---------------------------------------------------------

@dataclass
class Replay:
    """Every surface one replay published, with its cost; ``timed_out`` if it was killed."""

    surfaces: list[Surface]
    wall_s: float
    cpu_s: float
    timed_out: bool = False
    error: str = ""


#: The issue's limits on one replay of a real chain (seconds of wall time).
REPLAY_LIMIT_S = {"svi": 20.0, "sabr": 20.0, "ssvi": 20.0, "heston": 60.0}


def replay(tick_path: Path, model: str, *, config: Path | None = None,
           timeout_s: float | None = None) -> Replay:
    """``streamer replay FILE --sink stdout --model M`` in a subprocess, surfaces decoded.

    Past ``timeout_s`` the replay is killed and reported ``timed_out`` with the surfaces
    it had published by then.
    """
    cmd = [sys.executable, "-m", "streamer.cli", "replay", str(tick_path), "--sink", "stdout",
           "--model", model]
    if config is not None:
        cmd += ["--config", str(config)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        timed_out = True
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # A replay that publishes nothing exits 1 with its reason: scored as an empty card.
    error = "" if proc.returncode == 0 or timed_out else (
        f"exit {proc.returncode}: " + err.decode(errors="replace").strip()[-300:])
    lines = out.splitlines()
    if timed_out and lines and not out.endswith(b"\n"):
        lines = lines[:-1]  # the line being written when it was killed
    surfaces = [Surface.decode(line) for line in lines if line.strip()]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Replay(surfaces, wall, cpu, timed_out, error)


def head_snapshots(tick_path: Path, n: int, out_stem: Path) -> Path:
    """The first ``n`` snapshots of a tick file and its reference, as a new pair; the tick file.

    For models too slow to replay a whole file in a test.
    """
    ref_in = ref_path(tick_path)
    with gzip.open(ref_in, "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    times = sorted({int(r[0]) for r in rows[1:]})
    if n < len(times):
        end_ms = times[n]
        tick_out = Path(f"{out_stem}.ndjson.gz")
        with TickFileWriter(tick_out) as writer:
            for line in read_tickfile(tick_path):
                if line.received_ts_ns >= end_ms * 1_000_000:
                    break
                writer.write(line.received_ts_ns, line.raw)
        with gzip.open(ref_path(tick_out), "wt", newline="") as handle:
            csv.writer(handle).writerows([rows[0], *(r for r in rows[1:] if int(r[0]) < end_ms)])
        return tick_out
    return tick_path


def final_surfaces(ref: Reference, surfaces: Sequence[Surface]) -> dict[int, Surface]:
    """The last surface published as of each snapshot (keyed by snapshot time)."""
    out: dict[int, Surface] = {}
    for s in surfaces:  # in publication order: later ones replace earlier ones
        ts = ref.as_of(s.exchange_ts_ms)
        if ts is not None:
            out[ts] = s
    return out


def score_model(name: str, ref: Reference, rep: Replay) -> Card:
    """Score a model's replay: final surfaces per snapshot, and the ATM of every surface."""
    finals = final_surfaces(ref, rep.surfaces)
    scores: list[SliceScore] = []
    eligible = published = 0
    missing: list[str] = []
    for ts in ref.times:
        surface = finals.get(ts)
        slices = {} if surface is None else {s.expiry_ts_ms: s for s in surface.slices
                                             if s.usable}
        for expiry, q in sorted(ref.snapshots[ts].items()):
            if q.n_two_sided >= MIN_TWO_SIDED:
                eligible += 1
                published += expiry in slices
                if expiry not in slices:
                    missing.append(f"{ts}:{expiry}")
            if expiry in slices:
                scores.append(score_slice(slices[expiry], q))
    card = _card(name, scores, eligible, published, missing)
    card.atm_max_any = _atm_max_any(ref, rep.surfaces)
    card.n_surfaces, card.wall_s, card.cpu_s = len(rep.surfaces), rep.wall_s, rep.cpu_s
    card.timed_out, card.error = rep.timed_out, rep.error
    return card


def _atm_max_any(ref: Reference, surfaces: Sequence[Surface]) -> float:
    """Largest ATM error of any usable slice of any surface; NaN when none was published."""
    worst = math.nan if not surfaces else 0.0
    for surface in surfaces:
        ts = ref.as_of(surface.exchange_ts_ms)
        if ts is None:
            continue
        for s in surface.slices:
            q = ref.snapshots[ts].get(s.expiry_ts_ms)
            if q is None or not s.usable or q.n_two_sided < MIN_TWO_SIDED:
                continue
            with np.errstate(all="ignore"):
                atm = float(s.vol_k(np.zeros(1))[0])
            err = abs(atm - q.atm_mark) * 100.0
            worst = max(worst, err if math.isfinite(err) else math.inf)
    return worst


# --- baselines ------------------------------------------------------------------------------

def _svi_w(k: FloatArray, p: Sequence[float] | FloatArray) -> FloatArray:
    a, b, rho, m, sig = p
    result: FloatArray = a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sig * sig))
    return result


def scipy_svi(q: ExpiryQuotes) -> tuple[VolFn, float] | None:
    """Raw SVI by scipy ``least_squares`` on the mid IVs, best of 9 starts."""
    from scipy.optimize import least_squares

    two = q.two_sided
    if two.sum() < MIN_FIT_QUOTES:
        return None
    k, iv, t = np.log(q.strike[two] / q.forward), q.mid[two], q.t

    def resid(p: FloatArray) -> FloatArray:
        return np.sqrt(np.maximum(_svi_w(k, p), 1e-12) / t) - iv

    w_atm = float(np.interp(0.0, k, iv)) ** 2 * t
    w_max = float(np.max(iv)) ** 2 * t  # |a| within the largest quoted total variance
    lo = [-w_max, 1e-6, -0.999, k.min() - 0.5, 1e-4]
    hi = [w_max, 10.0, 0.999, k.max() + 0.5, 2.0]
    best = None
    for m0 in (0.0, k.min() / 2, k.max() / 2):
        for rho0 in (-0.5, 0.0, 0.5):
            x0 = np.clip([w_atm * 0.5, 0.1, rho0, m0, 0.1], lo, hi)
            fit = least_squares(resid, x0, bounds=(lo, hi), method="trf")
            if best is None or fit.cost < best.cost:
                best = fit
    assert best is not None
    p = best.x

    def vol(strike: FloatArray) -> FloatArray:
        return np.sqrt(np.maximum(_svi_w(np.log(strike / q.forward), p), 0.0) / t)

    return vol, float(vol(np.array([q.forward]))[0])


def ql_sabr(q: ExpiryQuotes) -> tuple[VolFn, float] | None:
    """QuantLib ``SABRInterpolation`` (beta = 1 fixed) on the mid IVs."""
    import QuantLib as ql  # noqa: N813

    two = q.two_sided
    if two.sum() < MIN_FIT_QUOTES:
        return None
    strikes, vols = [float(x) for x in q.strike[two]], [float(x) for x in q.mid[two]]
    atm = float(np.interp(q.forward, strikes, vols))
    interp = ql.SABRInterpolation(strikes, vols, q.t, q.forward, atm, 1.0, 0.5, 0.0,
                                  False, True, False, False, False, ql.EndCriteria(
                                      400, 50, 1e-10, 1e-10, 1e-10),
                                  ql.LevenbergMarquardt(), 0.002, False, 20)
    alpha, nu, rho = interp.alpha(), interp.nu(), interp.rho()

    def vol(strike: FloatArray) -> FloatArray:
        return np.array([ql.sabrVolatility(float(k), q.forward, q.t, alpha, 1.0, nu, rho)
                         for k in strike])

    return vol, float(vol(np.array([q.forward]))[0])


#: QuantLib dates have no time of day: Heston's time is stretched by this factor so that
#: expiries hours away land on whole days (Heston at c t with kappa / c, sigma / sqrt(c),
#: v0 / c, theta / c prices exactly as at t; vols scale by 1 / sqrt(c)); the rounding to
#: whole days then moves a 12-hour expiry's t by at most 0.4 %.
HESTON_TIME_STRETCH = 250.0


def ql_heston(expiries: Sequence[ExpiryQuotes]) -> dict[int, tuple[VolFn, float]]:
    """One QuantLib Heston per snapshot over all its expiries (LM on mid IVs, r = 0).

    Each expiry keeps its own forward by pricing in moneyness: strikes K / F_i on a unit
    spot (Heston with r = q = 0 has one forward).
    """
    import QuantLib as ql  # noqa: N813

    usable = [q for q in expiries if q.two_sided.sum() >= MIN_FIT_QUOTES]
    if not usable:
        return {}
    c = HESTON_TIME_STRETCH
    day_count = ql.Actual365Fixed()
    today = ql.Date(1, 1, 1901)
    ql.Settings.instance().evaluationDate = today
    flat = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, day_count))
    model = ql.HestonModel(ql.HestonProcess(flat, flat, ql.QuoteHandle(ql.SimpleQuote(1.0)),
                                            0.25 / c, 2.0 / c, 0.25 / c, 1.0 / math.sqrt(c),
                                            -0.3))
    engine = ql.AnalyticHestonEngine(model)

    def days(q: ExpiryQuotes) -> int:
        return max(1, round(q.t * c * 365.0))

    helpers = []
    for q in usable:
        for k, iv in zip(q.strike[q.two_sided], q.mid[q.two_sided], strict=True):
            h = ql.HestonModelHelper(ql.Period(days(q), ql.Days), ql.NullCalendar(), 1.0,
                                     float(k / q.forward),
                                     ql.QuoteHandle(ql.SimpleQuote(float(iv / math.sqrt(c)))),
                                     flat, flat, ql.BlackCalibrationHelper.ImpliedVolError)
            h.setPricingEngine(engine)
            helpers.append(h)
    model.calibrate(helpers, ql.LevenbergMarquardt(1e-8, 1e-8, 1e-8),
                    ql.EndCriteria(400, 40, 1e-8, 1e-8, 1e-8))
    out: dict[int, tuple[VolFn, float]] = {}
    for q in usable:
        t_ql = days(q) / 365.0
        maturity = today + days(q)

        def vol(strike: FloatArray, q: ExpiryQuotes = q, t_ql: float = t_ql,
                maturity: ql.Date = maturity) -> FloatArray:
            m = np.asarray(strike, np.float64) / q.forward
            prices = []
            for mk in m:
                opt = ql.EuropeanOption(ql.PlainVanillaPayoff(
                    ql.Option.Call if mk >= 1.0 else ql.Option.Put, float(mk)),
                    ql.EuropeanExercise(maturity))
                opt.setPricingEngine(engine)
                prices.append(opt.NPV())
            stretched = implied_vol(np.array(prices), 1.0, m, t_ql, m >= 1.0)
            return np.asarray(stretched * math.sqrt(c), np.float64)

        out[q.expiry_ts_ms] = (vol, float(vol(np.array([q.forward]))[0]))
    return out


def score_baseline(name: str, ref: Reference) -> Card:
    """A baseline on every expiry of every snapshot (the same quotes as the models)."""
    scores: list[SliceScore] = []
    eligible = published = 0
    missing: list[str] = []
    for ts in ref.times:
        expiries = ref.snapshots[ts]
        fits: dict[int, tuple[VolFn, float] | None]
        if name == "ql_heston":
            fits = dict(ql_heston(list(expiries.values())))
        else:
            fits = {e: _fit_one(name, q) for e, q in expiries.items()}
        for expiry, q in sorted(expiries.items()):
            fit = fits.get(expiry)
            if q.n_two_sided >= MIN_TWO_SIDED:
                eligible += 1
                published += fit is not None
                if fit is None:
                    missing.append(f"{ts}:{expiry}")
            if fit is not None:
                with np.errstate(all="ignore"):
                    scores.append(score_vols(q, fit[0](q.strike), fit[1]))
    return _card(name, scores, eligible, published, missing)


def _fit_one(name: str, q: ExpiryQuotes) -> tuple[VolFn, float] | None:
    if name == "scipy_svi":
        return scipy_svi(q)
    if name == "ql_sabr":
        return ql_sabr(q)
    if name == "deribit_mid":
        return _deribit_mid(q)
    raise ValueError(f"unknown baseline {name!r}")


def _deribit_mid(q: ExpiryQuotes) -> tuple[VolFn, float] | None:
    """The mids as a 'model' on the two-sided quotes (one-sided quotes: scored as NaN-free
    by linear interpolation of the mids in strike)."""
    two = q.two_sided
    if two.sum() < 2:
        return None
    strikes, mids = q.strike[two], q.mid[two]

    def vol(strike: FloatArray) -> FloatArray:
        return np.asarray(np.interp(strike, strikes, mids), np.float64)

    return vol, float(np.interp(q.forward, strikes, mids))


# --- report --------------------------------------------------------------------------------

def scorecard(tick_path: Path, models: Sequence[str], baselines: Sequence[str] = (), *,
              config: Path | None = None, timeout_s: float | None = None) -> list[Card]:
    """Cards for ``models`` (replayed) and ``baselines`` (fitted) on one tick file.

    ``timeout_s`` bounds each replay (None: each model's :data:`REPLAY_LIMIT_S` x 5).
    """
    ref = load_reference(ref_path(tick_path))
    cards = [score_model(m, ref, replay(
        tick_path, m, config=config,
        timeout_s=timeout_s if timeout_s is not None else 5 * REPLAY_LIMIT_S[m]))
        for m in models]
    for b in baselines:
        start, cpu0 = time.perf_counter(), time.process_time()
        card = score_baseline(b, ref)
        card.wall_s, card.cpu_s = time.perf_counter() - start, time.process_time() - cpu0
        cards.append(card)
    return cards


def _fmt(x: float, digits: int = 2) -> str:
    return "-" if not math.isfinite(x) else f"{x:.{digits}f}"


def table(cards: Sequence[Card]) -> str:
    """The per-model table and the per-bucket median RMSE table, as text."""
    head = (f"{'model':<12}{'rmse':>7}{'band%':>7}{'worst':>7}{'atm':>6}{'atmmax':>7}"
            f"{'any':>6}{'pub':>8}{'wall s':>8}{'cpu s':>7}")
    lines = [head]
    for c in cards:
        o = c.overall
        name = c.name + ("!" if c.timed_out else "")
        lines.append(f"{name:<12}{_fmt(o.rmse_vp_median):>7}{_fmt(o.in_band_pct, 1):>7}"
                     f"{_fmt(o.worst_vp, 1):>7}{_fmt(o.atm_vp_median):>6}"
                     f"{_fmt(o.atm_vp_max, 1):>7}{_fmt(c.atm_max_any, 1):>6}"
                     f"{c.published:>4}/{c.eligible:<3}{_fmt(c.wall_s, 1):>8}"
                     f"{_fmt(c.cpu_s, 1):>7}")
    if any(c.timed_out for c in cards):
        lines.append("! replay killed at its time limit: scored on what it had published")
    lines += [f"{c.name}: {c.error}" for c in cards if c.error]
    lines += ["", "median RMSE vs mark (vp) by expiry bucket [slices]",
              f"{'model':<12}" + "".join(f"{label:>13}" for label, _ in BUCKETS)]
    for c in cards:
        cells = [f"{_fmt(c.buckets[b].rmse_vp_median)} [{c.buckets[b].n_slices}]"
                 for b, _ in BUCKETS]
        lines.append(f"{c.name:<12}" + "".join(f"{x:>13}" for x in cells))
    return "\n".join(lines)


def per_snapshot_table(cards: Sequence[Card]) -> str:
    """Median RMSE per snapshot and model."""
    times = sorted({t for c in cards for t in c.per_snapshot})
    lines = [f"{'snapshot':<22}" + "".join(f"{c.name:>12}" for c in cards)]
    for ts in times:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts / 1000))
        cells = [_fmt(c.per_snapshot[ts].rmse_vp_median) if ts in c.per_snapshot else "-"
                 for c in cards]
        lines.append(f"{stamp:<22}" + "".join(f"{x:>12}" for x in cells))
    return "\n".join(lines)


def to_json(cards: Sequence[Card], *, per_snapshot: bool = False) -> dict[str, Any]:
    """Cards as plain data (NaN and inf as null)."""
    def clean(obj: Any) -> Any:
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    out = {}
    for c in cards:
        d = asdict(c)
        d.pop("slices")
        if not per_snapshot:
            d.pop("per_snapshot")
        out[c.name] = clean(d)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m streamer.devtools.scorecard",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("file", type=Path, help="tick file with its .ref.csv.gz beside it")
    parser.add_argument("--model", default="all", choices=[*MODELS, "all", "none"])
    parser.add_argument("--baselines", default="scipy_svi,ql_sabr,deribit_mid",
                        help=f"comma-separated, of {','.join(BASELINES)}; 'none' for none")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--per-snapshot", action="store_true")
    parser.add_argument("--snapshots", type=int, default=None,
                        help="score only the first N snapshots of the file")
    parser.add_argument("--timeout-s", type=float, default=None,
                        help="kill a replay after this long (default 5x the issue's limit: "
                             "100 s, Heston 300 s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not ref_path(args.file).exists():
        parser.error(f"no reference file {ref_path(args.file)} beside {args.file}")
    models = {"all": MODELS, "none": ()}.get(args.model, (args.model,))
    baselines = [] if args.baselines == "none" else [b for b in args.baselines.split(",") if b]
    if unknown := [b for b in baselines if b not in BASELINES]:
        parser.error(f"unknown baselines {unknown}; choose from {list(BASELINES)}")
    path = args.file
    if args.snapshots is not None:
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="scorecard-"))
        path = head_snapshots(args.file, args.snapshots, tmp / "head")
    cards = scorecard(path, models, baselines, config=args.config, timeout_s=args.timeout_s)
    if args.json:
        print(json.dumps(to_json(cards, per_snapshot=args.per_snapshot), indent=1))
    else:
        print(table(cards))
        if args.per_snapshot:
            print()
            print(per_snapshot_table(cards))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
