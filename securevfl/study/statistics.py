"""The study's statistics: paired differences over seeds, 95 % t intervals, and the verdicts decided on them.

Why a paired **t** interval and not a bootstrap. A study has 2 to 5 seeds per cell. A percentile
bootstrap of 5 paired differences has at most 126 distinct resamples and covers the true mean
well below its nominal 95 % at that size (it never reaches beyond the observed extremes); the
t interval is exact when the differences are normal, is the standard small-sample interval,
and a reader can recompute it by hand from the per-seed table. Its quantile comes from
``scipy.stats.t`` (scipy is already installed with scikit-learn and dp-accounting, both
dependencies of securevfl).

Definitions (every value a fraction; reports print points = 100 x fraction):

- a **paired difference** of two outcomes compares the same seeds only: ``d_s = b_s - a_s`` for
  every seed ``s`` that finished on both sides; ``n`` = number of such seeds, ``mean = mean(d)``,
  ``sd`` = sample standard deviation (``n - 1`` in the denominator) and the 95 % interval
  ``mean +- t_{0.975, n-1} * sd / sqrt(n)``. With ``n < 2`` there is no interval.
- **equivalent** (the test behind *survives encryption*): the whole 95 % interval of
  ``CKKS - plaintext`` lies inside ``[-EQUIVALENCE_MARGIN, +EQUIVALENCE_MARGIN]`` (5 points).
  This is the two one-sided tests (TOST) procedure at level 2.5 % per side, so stricter than the
  usual 90 % TOST interval.
- **differs**: the 95 % interval excludes 0 (and is not inside the margin).
- **inconclusive** otherwise, and always with fewer than :data:`MIN_PAIRS` paired seeds.
- a defense **reduces** the attack when the 95 % interval of ``undefended - defended`` success
  lies entirely above 0.

How stopped runs enter (intent to treat) is decided by the callers (:mod:`.survival`): a run
that stopped or collapsed is an outcome of its own, never a number in these intervals.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CONFIDENCE",
    "EQUIVALENCE_MARGIN",
    "MIN_PAIRS",
    "Interval",
    "Verdict",
    "equivalence",
    "mean_interval",
    "paired_difference",
    "reduction",
    "reduction_bounds",
    "robust_reduction",
    "t_quantile",
]

#: Two-sided confidence level of every interval the study reports.
CONFIDENCE = 0.95
#: Equivalence margin (fraction): "the same" means the 95 % interval of the difference lies within +-5 points.
EQUIVALENCE_MARGIN = 0.05
#: Fewest paired seeds an interval (and so a verdict) needs.
MIN_PAIRS = 2


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student t quantile ``t_{1 - (1 - confidence) / 2, df}`` (12.706 for df 1, 2.776 for df 4)."""
    if df < 1:
        raise ValueError(f"a t quantile needs at least 1 degree of freedom, got {df}")
    from scipy.stats import t  # imported here: the table module must stay cheap to import

    return float(t.ppf(1.0 - (1.0 - confidence) / 2.0, df))


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values (seeds, or paired seed differences) with its 95 % t interval.

    ``low``/``high`` are None when ``n < 2``; ``seeds`` are the seeds the values came from.
    """

    n: int
    mean: float | None
    low: float | None = None
    high: float | None = None
    sd: float | None = None
    seeds: tuple[int, ...] = ()

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def clipped(self, low: float, high: float) -> Interval:
        """The interval intersected with ``[low, high]``, the range the mean can take.

        The mean of a fraction lies in [0, 1] and a difference of two in [-1, 1]; a t interval
        can reach beyond (e.g. 82 +- 55 points over 2 seeds). Intersecting it with the range
        keeps every value the parameter can take, so the coverage is unchanged.
        """
        if not self.has_interval:
            return self
        assert self.low is not None and self.high is not None
        return Interval(self.n, self.mean, max(self.low, low), min(self.high, high), self.sd, self.seeds)

    def text(self, scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
        """``+2.0 [-1.3, 5.3]`` (points); ``+2.0 (n=1, no interval)``; ``-`` when empty."""
        if self.mean is None:
            return "-"
        sign = "+" if signed else ""
        text = f"{scale * self.mean:{sign}.{digits}f}"
        if self.has_interval:
            assert self.low is not None and self.high is not None
            return f"{text} [{scale * self.low:{sign}.{digits}f}, {scale * self.high:{sign}.{digits}f}]"
        return f"{text} (n={self.n}, no interval)"


def mean_interval(values: Sequence[float], seeds: Sequence[int] = ()) -> Interval:
    """Mean of ``values`` with its 95 % t interval (one-sample; the Table 2 cells)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Interval(0, None, seeds=tuple(seeds))
    mean = statistics.fmean(values)
    if n < MIN_PAIRS:
        return Interval(n, mean, seeds=tuple(seeds))
    sd = statistics.stdev(values)
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half, sd, tuple(seeds))


def paired_difference(first: Mapping[int, float], second: Mapping[int, float]) -> Interval:
    """``second - first`` over the seeds both have (seed -> value), mean and 95 % paired t interval."""
    seeds = sorted(set(first) & set(second))
    return mean_interval([second[s] - first[s] for s in seeds], seeds)


class Verdict(StrEnum):
    EQUIVALENT = "equivalent"
    DIFFERS = "differs"
    INCONCLUSIVE = "inconclusive"


def equivalence(difference: Interval, margin: float = EQUIVALENCE_MARGIN) -> Verdict:
    """Equivalent when the interval lies within ``+-margin``; differs when it excludes 0; else inconclusive."""
    if difference.n < MIN_PAIRS or not difference.has_interval:
        return Verdict.INCONCLUSIVE
    assert difference.low is not None and difference.high is not None
    if -margin <= difference.low and difference.high <= margin:
        return Verdict.EQUIVALENT
    if difference.low > 0 or difference.high < 0:
        return Verdict.DIFFERS
    return Verdict.INCONCLUSIVE


def reduction(undefended_minus_defended: Interval) -> bool | None:
    """True when the interval of (undefended - defended) success lies above 0; None without an interval."""
    if undefended_minus_defended.n < MIN_PAIRS or not undefended_minus_defended.has_interval:
        return None
    assert undefended_minus_defended.low is not None
    return undefended_minus_defended.low > 0


#: The most unknown values :func:`robust_reduction` completes (2^k corners are tried).
MAX_UNKNOWN = 10


def robust_reduction(
    known: Mapping[int, float], unknown: Mapping[int, tuple[float, float]], margin: float = EQUIVALENCE_MARGIN
) -> tuple[bool, Interval] | None:
    """Does a reduction work whatever the unknown values are? (intent to treat for stopped runs, as a bound)

    ``known``: seed -> measured reduction; ``unknown``: seed -> (lowest, highest) reduction the seed's
    stopped run could have had. The 95 % t interval's lower bound, ``mean - t * sd / sqrt(n)``, is
    concave in each value, so over the box of possible values it is smallest at one of its corners
    (filling a stopped seed with the defense's *best* outcome can widen the interval more than its
    worst outcome lowers it: a referee's counterexample). Every corner is tried; the reduction
    works when at every corner the interval lies above 0 and is not wholly below ``margin`` (also
    checked with each unknown at the known values' mean, clamped to its range, where the upper
    bound tends to be smallest). Returns (works, the corner interval with the lowest lower bound);
    None with more than :data:`MAX_UNKNOWN` unknowns or fewer than 2 seeds in all.
    """
    seeds = sorted(set(known) | set(unknown))
    if len(unknown) > MAX_UNKNOWN or len(seeds) < MIN_PAIRS:
        return None
    order = sorted(unknown)

    def interval(filled: Sequence[float]) -> Interval:
        values = {**known, **dict(zip(order, filled))}
        return mean_interval([values[s] for s in seeds], seeds)

    corners = [interval(corner) for corner in itertools.product(*(unknown[s] for s in order))]
    centre = statistics.fmean(known.values()) if known else 0.0
    middle = interval([min(max(centre, unknown[s][0]), unknown[s][1]) for s in order])
    worst = min(corners, key=lambda i: i.low if i.low is not None else -math.inf)
    works = all(i.low is not None and i.low > 0 and i.high is not None and i.high >= margin for i in (*corners, middle))
    return works, worst


def reduction_bounds(
    before: Mapping[int, float], after: Mapping[int, float], seeds: Sequence[int]
) -> tuple[dict[int, float], dict[int, tuple[float, float]]]:
    """``before - after`` of success fractions per seed: measured where both finished, else the range it could take.

    A stopped run's fraction lies anywhere in [0, 1], so a seed missing ``after`` has a reduction in
    ``[before - 1, before]``, one missing ``before`` in ``[-after, 1 - after]``, one missing both in
    ``[-1, 1]``: the ``known`` and ``unknown`` arguments of :func:`robust_reduction`.
    """
    known: dict[int, float] = {}
    unknown: dict[int, tuple[float, float]] = {}
    for seed in seeds:
        u, d = before.get(seed), after.get(seed)
        if u is not None and d is not None:
            known[seed] = u - d
        elif u is not None:
            unknown[seed] = (u - 1.0, u)
        elif d is not None:
            unknown[seed] = (-d, 1.0 - d)
        else:
            unknown[seed] = (-1.0, 1.0)
    return known, unknown
