"""Statistics of an experiment: per condition and observable, and effects against a reference.

For each (condition, observable), over the replicates where the observable
is defined (NaN values, e.g. the time to a first metastasis that never came,
are left out and ``n`` says how many remain): mean, median, standard
deviation and a bootstrap 95% confidence interval of the mean (percentile
method, 9999 resamples, fixed random state so the table is reproducible).

With a reference condition (ablation: ``all_on``) each other condition also
gets ``effect`` = mean - reference mean, Cliff's delta (a rank effect size in
[-1, 1]: P(x > y) - P(x < y) for x in the condition, y in the reference), and
the two-sided Mann-Whitney U test's p-value (no normality assumed; replicates
are few and counts are skewed), Holm-corrected over the conditions compared
for that observable (``p_holm``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as st

#: Bootstrap settings (fixed, so the table is the same every time it is computed).
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 20080101

COLUMNS = ["condition", "observable", "n", "mean", "median", "sd", "ci_low", "ci_high", "effect",
           "cliffs_delta", "p_value", "p_holm"]


def bootstrap_ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``x`` (NaN for fewer than 2 values)."""
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return (math.nan, math.nan)
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    res = st.bootstrap((x,), np.mean, confidence_level=level, n_resamples=BOOTSTRAP_RESAMPLES,
                       method="percentile", random_state=np.random.default_rng(BOOTSTRAP_SEED))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) - P(X < Y) over all pairs (NaN if either sample is empty)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0 or y.size == 0:
        return math.nan
    diff = x[:, None] - y[None, :]
    return float((np.sign(diff)).mean())


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def summarize(reps: pd.DataFrame, reference: str | None = None,
              order: list[str] | None = None) -> pd.DataFrame:
    """The statistics table (columns :data:`COLUMNS`) of tidy replicate observables."""
    rows = []
    if len(reps) == 0:
        return pd.DataFrame({c: [] for c in COLUMNS})
    conditions = order or sorted(reps["condition"].unique())
    conditions = [c for c in conditions if c in set(reps["condition"])]
    for obs, grp in reps.groupby("observable", sort=True):
        by = {c: g["value"].to_numpy(float) for c, g in grp.groupby("condition")}
        by = {c: v[~np.isnan(v)] for c, v in by.items()}
        ref = by.get(reference) if reference is not None else None
        block = []
        for c in conditions:
            if c not in by:
                continue
            x = by[c]
            lo, hi = bootstrap_ci(x)
            row = {"condition": c, "observable": obs, "n": int(x.size),
                   "mean": float(x.mean()) if x.size else math.nan,
                   "median": float(np.median(x)) if x.size else math.nan,
                   "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
                   "ci_low": lo, "ci_high": hi, "effect": math.nan, "cliffs_delta": math.nan,
                   "p_value": math.nan}
            if ref is not None and c != reference and x.size and ref.size:
                row["effect"] = row["mean"] - float(ref.mean())
                row["cliffs_delta"] = cliffs_delta(x, ref)
                if np.all(x == x[0]) and np.all(ref == x[0]):
                    row["p_value"] = 1.0
                else:
                    row["p_value"] = float(st.mannwhitneyu(x, ref, alternative="two-sided").pvalue)
            block.append(row)
        adjusted = holm(np.array([r["p_value"] for r in block]))
        for r, p in zip(block, adjusted, strict=True):
            r["p_holm"] = p
        rows += block
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({"condition": "string", "observable": "string"})
