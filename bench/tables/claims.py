"""The papers' derived claims, recomputed the same way from reported and from reproduced cells.

A claim in a table file names its kind and the cells it is built from:

- ``mean_relative_gain``: ``mean_i(a_i / b_i - 1)`` over the ``pairs`` ``[a_cell, b_cell]``
  (``bench.metrics.stats.relative_gain``), e.g. DiDGen's "+3.26 % IoU at S_1k".
- ``mean_relative_reduction``: ``mean_i(1 - a_i / b_i)``, for lower-is-better metrics
  (CXR-IRGen's "FID improved by 15.84 % with RIE").
- ``mean_absolute_gain``: ``mean_i(a_i - b_i)`` in the table's units
  (``bench.metrics.stats.absolute_gain``; MedDiff-FT's Dice points).
- ``paired_ttest_p``: a p-value. It cannot be rebuilt from a table of means, so the
  reported side is the stated value only and the reproduced side is the p of the
  matching records' ``comparisons.paired_ttest[metric]`` (median over seeds).

Each claim yields: the stated value (as printed in the text), the value recomputed
from the reported cells, and the value recomputed from the reproduced cells. Where every
cell of a gain claim was reproduced at two or more common seeds, the reproduced claim is
computed per seed (treatment and reference of the same seed) and given as the mean over
seeds with a 95 % Student-t interval: seeds, not one run's digits, set its precision.

Each reproduced claim also gets a *reading* of its direction (``ClaimResult.reading``), by a fixed rule that looks
at seeds only, never at how close the value comes to the stated one:

- a gain claim is *supported* when its 95 % interval over seeds lies on the stated side of zero, *contradicted* when
  it lies on the other side, and *unresolved* when it contains zero or fewer than two seeds were run;
- a p-value claim (the papers' "the treatment is significantly better") is *supported* when every seed's paired test
  has p < 0.05 with a gain, *contradicted* when every seed's has p < 0.05 with a loss, and *unresolved* otherwise.
"""
from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from typing import Any

from bench.metrics.stats import t_interval
from bench.tables.reproduce import TableResult

logger = logging.getLogger(__name__)

GAIN_KINDS = ("mean_relative_gain", "mean_relative_reduction", "mean_absolute_gain")


@dataclass(frozen=True)
class ClaimResult:
    """One derived claim, three ways.

    Attributes:
        stated: the value printed in the paper's text (a fraction for percentages), or None.
        stated_printed: that value as printed.
        from_reported: the claim recomputed from the table's reported cells.
        from_reproduced: the claim recomputed from the reproduced cells (None if incomplete).
        percent: whether to print the values as percentages.
        detail: why a value is missing (e.g. "2/4 cells reproduced").
    """

    id: str
    text: str
    kind: str
    stated: float | None
    stated_printed: str | None
    from_reported: float | None
    from_reproduced: float | None
    percent: bool
    detail: str = ""
    note: str = ""
    stated_matches_table: bool = True
    """False where the source's stated value is known not to follow from its own table."""
    source: str = ""
    """Where the stated value is printed when that is not the table's own document (a paper abstract, a README)."""
    effect: float | None = None
    """For a reproduced p-value: the mean relative gain of the same records, so the p-value's sign is visible (a tiny
    p-value of a loss is no confirmation)."""
    seeds: tuple[int, ...] = ()
    """The seeds the reproduced gain claim was computed at, one value each, when there are two or more."""
    per_seed: tuple[float, ...] = ()
    ci: tuple[float, float] | None = None
    """95 % Student-t interval of the mean of ``per_seed``."""
    seed_tests: tuple[tuple[float, float | None], ...] = ()
    """For a reproduced p-value: each seed's (p, relative gain) of the records it was read from."""

    @property
    def reading(self) -> str:
        """'supported', 'contradicted' or 'unresolved: <why>' for the reproduced claim's direction over seeds (the
        module's rule); '' when nothing was reproduced."""
        if self.from_reproduced is None:
            return ""
        if self.kind == "paired_ttest_p":
            return _pvalue_reading(self.seed_tests)
        direction = self.stated if self.stated else self.from_reported
        if not direction:
            return "unresolved: the claim states no direction"
        if self.ci is None:
            return "unresolved: one seed, no interval"
        low, high = self.ci
        if low > 0 or high < 0:
            return "supported" if (low > 0) == (direction > 0) else "contradicted"
        return "unresolved: the 95% interval contains 0"


#: The significance level of the p-value claims' reading.
ALPHA = 0.05


def _pvalue_reading(tests: tuple[tuple[float, float | None], ...]) -> str:
    if any(g is None for _, g in tests):
        return "unresolved: a record has no gain beside its p-value"
    if len(tests) < 2:
        return "unresolved: one seed"
    if all(p < ALPHA and g > 0 for p, g in tests):
        return "supported"
    if all(p < ALPHA and g < 0 for p, g in tests):
        return "contradicted"
    return f"unresolved: p < {ALPHA} with a gain in {sum(p < ALPHA and g > 0 for p, g in tests)} of {len(tests)} seeds"


def gain(kind: str, a: list[float], b: list[float]) -> float:
    """Apply a gain kind to paired values ``a`` (treatment) and ``b`` (reference)."""
    from bench.metrics.stats import absolute_gain, relative_gain

    if kind == "mean_relative_gain":
        return relative_gain(a, b)
    if kind == "mean_relative_reduction":
        return -relative_gain(a, b)
    if kind == "mean_absolute_gain":
        return absolute_gain(a, b)
    raise ValueError(f"unknown claim kind '{kind}'; valid: {', '.join(GAIN_KINDS + ('paired_ttest_p',))}")


def _pairs(claim: dict[str, Any]) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    return [(tuple(a), tuple(b)) for a, b in claim["pairs"]]


def per_seed_gains(kind: str, got: list[tuple[Any, Any]]
                   ) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    """The claim at each seed that every cell of ``got`` (pairs of treatment and reference cells) was reproduced at,
    and the seeds where it is undefined (a relative gain over a reference cell of 0: a classifier that never
    predicts a class has F1 0 for it), which are left out of the per-seed claims."""
    by_seed = [(dict(zip(ca.seeds, ca.values)), dict(zip(cb.seeds, cb.values))) for ca, cb in got]
    common = sorted(set.intersection(*(set(a) & set(b) for a, b in by_seed))) if by_seed else []
    seeds, gains, undefined = [], [], []
    for s in common:
        try:
            gains.append(gain(kind, [a[s] for a, _ in by_seed], [b[s] for _, b in by_seed]))
            seeds.append(s)
        except ValueError:
            undefined.append(s)
    return tuple(seeds), tuple(gains), tuple(undefined)


def _gain_claim(claim: dict[str, Any], result: TableResult) -> tuple[float | None, float | None, str, dict[str, Any]]:
    """(from reported cells, from reproduced cells, detail, the per-seed fields of ``ClaimResult`` when every cell
    has two or more common seeds: then the reproduced value is the mean of the per-seed claims)."""
    table = result.table
    pairs = _pairs(claim)
    rep_a, rep_b, missing_rep = [], [], 0
    for a, b in pairs:
        ra, rb = table.reported(*a), table.reported(*b)
        if ra is None or rb is None:
            missing_rep += 1
            continue
        rep_a.append(ra.value)
        rep_b.append(rb.value)
    from_reported = gain(claim["kind"], rep_a, rep_b) if not missing_rep else None
    got = [(result.cell(*a), result.cell(*b)) for a, b in pairs]
    complete = [(ca.mean, cb.mean) for ca, cb in got if ca.mean is not None and cb.mean is not None]
    from_reproduced, detail = None, ""
    if len(complete) == len(pairs):
        try:
            from_reproduced = gain(claim["kind"], [x for x, _ in complete], [y for _, y in complete])
        except ValueError as exc:
            detail = str(exc)
    else:
        n_cells = len({c for pair in pairs for c in pair})
        n_ok = len({c for pair in pairs for c in pair if result.cell(*c).mean is not None})
        detail = f"{n_ok}/{n_cells} cells reproduced"
    over_seeds: dict[str, Any] = {}
    if from_reproduced is not None:
        seeds, per_seed, undefined = per_seed_gains(claim["kind"], got)
        if undefined:
            detail = (f"seed{'s' * (len(undefined) > 1)} {', '.join(map(str, undefined))} left out: a reference cell "
                      f"is 0 there, so the relative gain is undefined")
        if len(seeds) >= 2:
            from_reproduced = statistics.fmean(per_seed)
            over_seeds = {"seeds": seeds, "per_seed": per_seed, "ci": t_interval(per_seed)}
    return from_reported, from_reproduced, detail, over_seeds


def _pvalue_claim(claim: dict[str, Any], result: TableResult
                  ) -> tuple[float | None, float | None, str, tuple[tuple[float, float | None], ...]]:
    """(median p over seeds, mean relative gain of the same records, detail, each seed's (p, gain))."""
    cell = result.cell(*claim["cell"])
    tests: list[tuple[float, float | None]] = []
    for rec in cell.records:
        comparisons = rec.get("comparisons") or {}
        test = (comparisons.get("paired_ttest") or {}).get(claim["metric"]) or {}
        if isinstance(test.get("p"), (int, float)):
            gain_value = (comparisons.get("relative_gain") or {}).get(claim["metric"])
            tests.append((float(test["p"]), float(gain_value) if isinstance(gain_value, (int, float)) else None))
    if not tests:
        return None, None, "no reproduced run with a paired t-test" if cell.records else "cell not reproduced", ()
    detail = f"median over {len(tests)} seed(s)" if len(tests) > 1 else ""
    gains = [g for _, g in tests if g is not None]
    effect = statistics.mean(gains) if len(gains) == len(tests) else None
    return statistics.median(p for p, _ in tests), effect, detail, tuple(tests)


def evaluate_claims(result: TableResult) -> list[ClaimResult]:
    """Every claim of the table, stated vs recomputed from reported vs from reproduced cells."""
    out = []
    for claim in result.table.claims:
        kind = claim["kind"]
        stated = claim.get("stated") or {}
        if kind == "paired_ttest_p":
            reproduced, effect, detail, tests = _pvalue_claim(claim, result)
            out.append(ClaimResult(claim["id"], claim["text"], kind, stated.get("value"), stated.get("printed"),
                                   None, reproduced, False, detail or "a p-value cannot be recomputed from the table",
                                   claim.get("note", ""), source=claim.get("source", ""), effect=effect,
                                   seed_tests=tests))
            continue
        reported, reproduced, detail, over_seeds = _gain_claim(claim, result)
        out.append(ClaimResult(claim["id"], claim["text"], kind, stated.get("value"), stated.get("printed"),
                               reported, reproduced, bool(claim.get("percent", True)), detail, claim.get("note", ""),
                               bool(claim.get("stated_matches_table", True)), claim.get("source", ""), **over_seeds))
    return out
