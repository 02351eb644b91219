"""The statistics of ``ablate`` (numpy only): each row's spread over seeds, and each row against
LSG on paired seeds.

A seed is the unit: every row trains seed ``s`` from the same initial weights on the same sample
order (:mod:`training.loop` seeds both from the config's seed alone), so row ``r`` and LSG give one
paired difference ``d_s = acc_r(s) - acc_lsg(s)`` per seed. For each comparison:

* the **exact paired sign-flip test** (a permutation test): under the null hypothesis that a
  seed's two accuracies are exchangeable, every sign pattern of the ``d_s`` is equally likely;
  ``p`` is the share of the ``2^n`` patterns whose mean difference is at least as far from 0 as the
  observed one (two-sided; exact up to :data:`EXACT_UP_TO` seeds, else :data:`RANDOM_FLIPS` random
  patterns from a fixed RNG). A difference is called **significant** when ``p < ALPHA``. With ``n``
  seeds the smallest possible ``p`` is ``2 / 2^n``: fewer than 6 seeds can never reach 0.05.
* a **paired bootstrap** 95% confidence interval of the mean difference: the ``d_s`` resampled
  with replacement :data:`RESAMPLES` times (``numpy.random.default_rng(BOOTSTRAP_SEED)``), the
  2.5th and 97.5th percentiles of the resampled means. It shows the size of a difference; with
  few seeds it is narrower than it should be, so significance is the test's, not the interval's.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import numpy as np

ALPHA = 0.05  #: the test's level
EXACT_UP_TO = 16  #: seeds up to which the sign-flip test enumerates every pattern
RANDOM_FLIPS = 100_000
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), min, max and the values."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values), "values": list(values)}


def sign_flip_p(diffs: list[float]) -> float:
    """Two-sided p of the paired sign-flip test of ``diffs`` (the module's docstring)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    if n == 0:
        raise ValueError("no paired differences")
    if n <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(BOOTSTRAP_SEED).choice((1.0, -1.0), size=(RANDOM_FLIPS, n))
    means = np.abs(signs @ d) / n
    observed = abs(d.sum()) / n
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))  # ties with the observed count


def bootstrap_ci(diffs: list[float], level: float = 0.95) -> tuple[float, float]:
    """The paired bootstrap's percentile interval of the mean of ``diffs``."""
    d = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = d[rng.integers(0, len(d), size=(RESAMPLES, len(d)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def paired(values: list[float], reference: list[float]) -> dict[str, Any]:
    """Row against the reference (LSG), seed by seed: the mean difference, its bootstrap CI, the
    sign-flip p and whether the difference is significant."""
    if len(values) != len(reference):
        raise ValueError(f"paired seeds: {len(values)} values against {len(reference)}")
    diffs = [a - b for a, b in zip(values, reference, strict=True)]
    p = sign_flip_p(diffs)
    lo, hi = bootstrap_ci(diffs)
    return {"diffs": diffs, "mean_diff": statistics.fmean(diffs), "ci95": [lo, hi], "p": p, "significant": p < ALPHA,
            "n": len(diffs)}
