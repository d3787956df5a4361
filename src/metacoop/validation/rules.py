"""Tolerance rules: how a target's simulated value is judged against the published one.

A rule is written in the ``rule`` column of a targets file:

* ``range``: the mean over replicates lies in [low, high] (an empty bound is open);
* ``relative:x``: the mean lies within ``x`` times the published value of it;
* ``factor:x``: the mean lies between value / x and value * x;
* ``at_least:x`` / ``at_most:x``: the mean is at least / at most ``x``;
* ``replicates:f``: for a yes/no observable, it holds in at least a fraction ``f``
  of the replicates (NaN, nothing to judge, counts as not holding);
* ``above:key=value;...`` / ``below:...``: the values are greater / smaller than
  those of the same scenario with the row's overrides and these ones, by a
  one-sided Mann-Whitney U test at :data:`ALPHA` (replicates are few and
  skewed; no normality is assumed).

The mean comes with a percentile-bootstrap 95 % confidence interval
(:func:`metacoop.experiments.stats.bootstrap_ci`). The point estimate, not the
interval, decides pass or fail: an interval that merely touches the band
would pass an ensemble too small to tell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as st

from metacoop.errors import InputError, Problem

#: Significance level of the comparison rules.
ALPHA = 0.05
KINDS = ("range", "relative", "factor", "at_least", "at_most", "replicates", "above", "below")


@dataclass(frozen=True)
class Verdict:
    """A rule applied to one target's replicate values.

    Attributes:
        value: the simulated value (mean, or the fraction of replicates for ``replicates``).
        ci_low, ci_high: its 95 % confidence interval (NaN with fewer than two values).
        n: replicates with a value.
        passed: whether the rule holds.
        detail: what decided, in words (the band, the p-value).
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    passed: bool
    detail: str


@dataclass(frozen=True)
class Rule:
    """A parsed rule (see the module docstring)."""

    kind: str
    arg: float = math.nan
    other: dict[str, Any] = field(default_factory=dict)

    @property
    def compares(self) -> bool:
        """Whether the rule needs the values of a second condition."""
        return self.kind in ("above", "below")

    def check_target(self, value: float | str, low: float, high: float, where: str) -> None:
        """Refuse a rule the row's published figures cannot support (e.g. ``factor`` of a text value)."""
        if self.kind in ("relative", "factor") and not isinstance(value, float | int):
            raise InputError([Problem(where, self.kind, "needs a numeric value column")])
        if self.kind in ("relative", "factor") and isinstance(value, float) and math.isnan(value):
            raise InputError([Problem(where, self.kind, "needs a numeric value column")])
        if self.kind == "range" and math.isnan(low) and math.isnan(high):
            raise InputError([Problem(where, self.kind, "needs a low or a high column")])

    def band(self, value: float | str, low: float, high: float) -> tuple[float, float]:
        """The accepted interval of the mean (for the kinds that have one)."""
        if self.kind == "range":
            return (-math.inf if math.isnan(low) else low, math.inf if math.isnan(high) else high)
        if self.kind == "relative":
            return (float(value) * (1 - self.arg), float(value) * (1 + self.arg))
        if self.kind == "factor":
            return (float(value) / self.arg, float(value) * self.arg)
        if self.kind == "at_least":
            return (self.arg, math.inf)
        if self.kind == "at_most":
            return (-math.inf, self.arg)
        raise ValueError(f"rule {self.kind} has no band")

    def describe(self, value: float | str = math.nan, low: float = math.nan, high: float = math.nan) -> str:
        """The rule in words, for tables."""
        if self.kind == "replicates":
            return f"holds in >= {self.arg:.0%} of replicates"
        if self.compares:
            other = "; ".join(f"{k}={v}" for k, v in self.other.items())
            word = "greater" if self.kind == "above" else "smaller"
            return f"{word} than with {other} (one-sided Mann-Whitney p < {ALPHA})"
        lo, hi = self.band(value, low, high)
        if math.isinf(lo):
            return f"mean <= {hi:.4g}"
        if math.isinf(hi):
            return f"mean >= {lo:.4g}"
        return f"mean in [{lo:.4g}, {hi:.4g}]"

    def judge(self, values: np.ndarray, value: float | str = math.nan, low: float = math.nan,
              high: float = math.nan, other: np.ndarray | None = None) -> Verdict:
        """Apply the rule to the replicate values (and, for comparisons, the other condition's)."""
        from metacoop.experiments.stats import bootstrap_ci

        values = np.asarray(values, dtype=float)
        if self.kind == "replicates":
            holds = np.where(np.isnan(values), 0.0, (values >= 0.5).astype(float))
            frac = float(holds.mean()) if holds.size else math.nan
            lo, hi = bootstrap_ci(holds)
            return Verdict(frac, lo, hi, holds.size, bool(holds.size) and frac >= self.arg,
                           f"{int(holds.sum())} of {holds.size} replicates")
        x = values[~np.isnan(values)]
        mean = float(x.mean()) if x.size else math.nan
        lo, hi = bootstrap_ci(x)
        if x.size == 0:
            return Verdict(mean, lo, hi, 0, False, "no replicate had a value")
        if self.compares:
            y = np.asarray(other if other is not None else [], dtype=float)
            y = y[~np.isnan(y)]
            if y.size == 0:
                return Verdict(mean, lo, hi, x.size, False, "the comparison condition had no value")
            alternative = "greater" if self.kind == "above" else "less"
            p = float(st.mannwhitneyu(x, y, alternative=alternative).pvalue)
            return Verdict(mean, lo, hi, x.size, p < ALPHA,
                           f"comparison mean {float(y.mean()):.4g}, p = {p:.3g}")
        a, b = self.band(value, low, high)
        return Verdict(mean, lo, hi, x.size, a <= mean <= b, f"{x.size} replicates with a value")


def parse_rule(text: str, where: str) -> Rule:
    """Read a rule from its text (see the module docstring); refuse anything else by name."""
    from metacoop.validation.targets import parse_overrides

    kind, sep, arg = (t.strip() for t in text.partition(":"))
    allowed = ("range, relative:x, factor:x, at_least:x, at_most:x, replicates:f, above:key=value;..., "
               "below:key=value;...")
    if kind not in KINDS:
        raise InputError([Problem(where, text, f"unknown rule; rules: {allowed}")])
    if kind == "range":
        if sep:
            raise InputError([Problem(where, text, "range takes no argument (it uses the low and high "
                                                   "columns)")])
        return Rule(kind)
    if kind in ("above", "below"):
        other = parse_overrides(arg, where)
        if not other:
            raise InputError([Problem(where, text, f"{kind} needs the overrides of the comparison condition, "
                                                   f"e.g. {kind}:mechanisms.niche.enabled=false")])
        return Rule(kind, other=other)
    try:
        x = float(arg)
    except ValueError:
        raise InputError([Problem(where, text, f"{kind} needs a number: {kind}:x")]) from None
    if math.isnan(x) or math.isinf(x):
        raise InputError([Problem(where, text, f"{kind} needs a finite number")])
    if kind == "relative" and not 0 < x < 1:
        raise InputError([Problem(where, text, "relative:x needs 0 < x < 1")])
    if kind == "factor" and not x > 1:
        raise InputError([Problem(where, text, "factor:x needs x > 1")])
    if kind == "replicates" and not 0 < x <= 1:
        raise InputError([Problem(where, text, "replicates:f needs 0 < f <= 1")])
    return Rule(kind, x)
