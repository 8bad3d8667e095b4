"""Statistics of the reports: Student's t distribution, the two-sided t-tests over seeds (Welch's between
independently trained variants; the paired one between variants that share their weights seed by seed, such as a
test-time variant and the variant whose weights it evaluates), and the number of seeds a difference would need to
be resolved.

scipy is not a declared dependency, so Student's t goes through the regularized incomplete beta function
(:func:`regularized_incomplete_beta`, a modified-Lentz continued fraction, Numerical Recipes §6.4):
``P(|T| > t) = I_{df/(df+t²)}(df/2, 1/2)``, with Welch–Satterthwaite degrees of freedom for the test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _beta_continued_fraction(a: float, b: float, x: float, eps: float = 1e-15, max_terms: int = 1000) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), converging for x < (a+1)/(a+b+2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_terms + 1):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even step d_{2m}
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),  # odd step d_{2m+1}
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b) = B(x; a, b) / B(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if a <= 0 or b <= 0:
        raise ValueError(f"regularized_incomplete_beta needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"regularized_incomplete_beta needs 0 <= x <= 1, got x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``df`` degrees of freedom (``df`` may be fractional)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def student_t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * student_t_two_sided_p(t, df)
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(q: float, df: float) -> float:
    """The ``t`` with ``P(T <= t) = q`` for Student's t with ``df`` degrees of freedom (bisection)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"a quantile needs 0 < q < 1, got {q}")
    low, high = -1.0, 1.0
    while student_t_cdf(low, df) > q:
        low *= 2
    while student_t_cdf(high, df) < q:
        high *= 2
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if student_t_cdf(mid, df) < q else (low, mid)
        if high - low < 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (low + high)


def seeds_to_resolve(
    difference: float,
    spread: float,
    alpha: float = 0.05,
    power: float = 0.8,
    limit: int = 1000,
    paired: bool = False,
) -> int | None:
    """The fewest seeds per variant with which a two-sided t-test at level ``alpha`` finds a true
    ``difference`` with probability ``power`` when runs scatter by ``spread`` (standard deviation over
    seeds); None above ``limit``, or for a zero difference (no number of seeds resolves it). The sample-size
    tables' criterion: the smallest ``n >= 2`` with ``2 ((t_{1-alpha/2} + t_{power}) spread / difference)^2
    <= n``, Student's t at ``2n - 2`` degrees of freedom (e.g. 64 per variant for a difference of half a
    spread, as the exact noncentral-t power gives)."""
    if spread < 0 or not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"seeds_to_resolve needs spread >= 0, 0 < alpha, power < 1; got {spread}, {alpha}, {power}")
    if difference == 0:
        return None
    if spread == 0:
        return 2
    effect = abs(difference) / spread

    def enough(n: int) -> bool:  # holds from some n on: the left side falls as n grows
        df, samples = (n - 1, 1) if paired else (2 * n - 2, 2)
        return samples * ((student_t_quantile(1 - alpha / 2, df) + student_t_quantile(power, df)) / effect) ** 2 <= n

    if not enough(limit):
        return None
    low, high = 1, limit  # enough(high) holds; enough(low) is taken as failing (one seed has no spread)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


@dataclass(frozen=True)
class SeedTest:
    """A two-sided t-test of ``mean(a) - mean(b)`` over seeds: its ``name`` (``Welch`` or ``paired``), statistic,
    degrees of freedom and p-value."""

    difference: float
    t: float
    df: float
    p: float
    name: str = "Welch"


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> SeedTest:
    """Welch's unequal-variance t-test between two samples of at least two values each."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"welch_t_test needs at least 2 values per sample, got {len(a)} and {len(b)}")
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se2 = va + vb
    if se2 == 0:  # both samples constant: the difference is exact
        return _exact(diff, "Welch")
    t = diff / math.sqrt(se2)
    df = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return SeedTest(diff, t, df, student_t_two_sided_p(t, df))


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> SeedTest:
    """The paired t-test of ``a[i] - b[i]`` (at least two pairs): for runs that share their weights seed by seed,
    where what scatters from seed to seed cancels in each difference."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired_t_test needs two samples of the same length >= 2, got {len(a)} and {len(b)}")
    differences = a - b
    diff, sd = float(differences.mean()), float(differences.std(ddof=1))
    if sd == 0:
        return _exact(diff, "paired")
    t = diff / (sd / math.sqrt(len(a)))
    return SeedTest(diff, t, len(a) - 1, student_t_two_sided_p(t, len(a) - 1), "paired")


def _exact(diff: float, name: str) -> SeedTest:
    """Samples without spread: the difference is exact (p 0), or there is none (p 1)."""
    return SeedTest(diff, math.copysign(math.inf, diff) if diff else 0.0, math.inf, 0.0 if diff else 1.0, name)
