"""bench/tables/claims.py: derived claims recomputed from reported and reproduced cells."""
from __future__ import annotations

import math

import pytest

from bench.metrics.stats import relative_gain
from bench.tables.claims import evaluate_claims
from bench.tables.paper import load_all, load_table
from bench.tables.reproduce import reproduce_table

ALL_CLAIMS = [(t.id, c["id"]) for t in load_all() for c in t.claims]


def _tolerance(printed: str, percent: bool) -> float:
    """Rounding slack of a stated value: one unit of its last printed digit for percentages, 0.6 otherwise."""
    digits = printed.strip("+%").partition(".")[2]
    unit = 10.0 ** -len(digits) / (100 if percent else 1)
    return unit if percent else 0.6 * unit


@pytest.mark.parametrize("table_id,claim_id", ALL_CLAIMS)
def test_stated_claims_follow_from_the_reported_cells(table_id: str, claim_id: str) -> None:
    """Recomputing each claim from the reported cells gives the stated value, except where the source is known
    to be inconsistent (``stated_matches_table: false``), which must then really differ."""
    table = load_table(table_id)
    claim = next(c for c in evaluate_claims(reproduce_table(table, "paper", [])) if c.id == claim_id)
    if claim.kind == "paired_ttest_p":
        assert claim.from_reported is None and claim.stated is not None
        return
    assert claim.from_reported is not None
    if claim.stated is None:
        return
    close = abs(claim.from_reported - claim.stated) <= _tolerance(claim.stated_printed, claim.percent)
    assert close == claim.stated_matches_table, (
        f"{table_id}/{claim_id}: stated {claim.stated_printed}, recomputed {claim.from_reported:.5f}")


def test_claims_recompute_from_reproduced_cells_the_same_way(record_factory) -> None:
    table = load_table("thesis-4.5")
    models = ["unet", "attention-unet", "dcsau-net", "xbound-former"]
    orig = {"unet": 0.60, "attention-unet": 0.62, "dcsau-net": 0.65, "xbound-former": 0.70}
    aug = {"unet": 0.63, "attention-unet": 0.62, "dcsau-net": 0.68, "xbound-former": 0.71}
    records = []
    for method, values in (("real-only", orig), ("didgen", aug)):
        records.append(record_factory(method=method, per_model={m: {"iou": values[m], "dice": values[m] + 0.1} for m in models},
                                      comparisons={"paired_ttest": {"iou": {"t": 3.0, "p": 0.004, "n": 1200, "mean_diff": 0.01}}}
                                      if method == "didgen" else None))
    claims = {c.id: c for c in evaluate_claims(reproduce_table(table, "mini", records))}
    assert math.isclose(claims["gain-iou-s1k"].from_reproduced, relative_gain(aug, orig))
    assert math.isclose(claims["gain-dice-s1k"].from_reproduced,
                        relative_gain({m: v + 0.1 for m, v in aug.items()}, {m: v + 0.1 for m, v in orig.items()}))
    # the same function gives the reported side from the table's own numbers
    assert math.isclose(claims["gain-iou-s1k"].from_reported,
                        relative_gain([0.737, 0.745, 0.756, 0.788], [0.716, 0.719, 0.723, 0.773]))
    # S_2.5k cells have no runs: the claim says how much is missing instead of guessing
    assert claims["gain-iou-s2.5k"].from_reproduced is None and claims["gain-iou-s2.5k"].detail == "0/8 cells reproduced"
    # p-values come from the runs' paired t-tests (the ttest claim reads the S_2.5k DiDGen cell: not run here)
    assert claims["ttest"].from_reproduced is None


def test_pvalue_claim_reads_the_records_ttest(record_factory) -> None:
    table = load_table("thesis-4.5")
    recs = [record_factory(method="didgen", seed=s, n={"real_train": 520}, per_model={"unet": {"iou": 0.7}},
                           comparisons={"paired_ttest": {"iou": {"t": 2.0, "p": p, "n": 10, "mean_diff": 0.1}}})
            for s, p in ((0, 0.01), (1, 0.03), (2, 0.02))]
    claim = next(c for c in evaluate_claims(reproduce_table(table, "mini", recs)) if c.id == "ttest")
    assert claim.from_reproduced == 0.02 and "median over 3 seed(s)" in claim.detail
    assert claim.reading == "unresolved: a record has no gain beside its p-value"


@pytest.mark.parametrize(("tests", "reading"), [
    (((0.01, 0.02), (0.03, 0.01), (0.001, 0.04)), "supported"),
    (((1e-9, -0.01), (1e-4, -0.02)), "contradicted"),
    (((0.01, 0.02), (0.20, 0.01), (0.001, 0.04)), "unresolved: p < 0.05 with a gain in 2 of 3 seeds"),
    (((0.01, 0.02), (0.01, -0.01)), "unresolved: p < 0.05 with a gain in 1 of 2 seeds"),
    (((1e-9, 0.02),), "unresolved: one seed"),
])
def test_a_pvalue_claim_reads_supported_only_when_every_seed_is_significant_with_a_gain(record_factory, tests,
                                                                                         reading) -> None:
    recs = [record_factory(method="didgen", seed=s, n={"real_train": 520}, per_model={"unet": {"iou": 0.7}},
                           comparisons={"paired_ttest": {"iou": {"t": 2.0, "p": p, "n": 10, "mean_diff": g}},
                                        "relative_gain": {"iou": g}})
            for s, (p, g) in enumerate(tests)]
    claim = next(c for c in evaluate_claims(reproduce_table(load_table("thesis-4.5"), "mini", recs)) if c.id == "ttest")
    assert claim.reading == reading


def test_a_reproduced_pvalue_shows_the_sign_of_its_effect(record_factory) -> None:
    from bench.tables.render import to_markdown

    table = load_table("thesis-4.5")
    recs = [record_factory(method="didgen", seed=s, n={"real_train": 520}, per_model={"unet": {"iou": 0.7}},
                           comparisons={"paired_ttest": {"iou": {"t": -6.0, "p": 1e-9, "n": 10, "mean_diff": -0.01}},
                                        "relative_gain": {"iou": g}})
            for s, g in ((0, -0.012), (1, -0.008))]
    result = reproduce_table(table, "mini", recs)
    claim = next(c for c in evaluate_claims(result) if c.id == "ttest")
    assert abs(claim.effect + 0.010) < 1e-12
    assert "1.00e-09 (gain -1.00%)" in to_markdown(result)  # a tiny p of a loss reads as a loss


def test_a_claim_stated_outside_the_table_document_names_its_source() -> None:
    from bench.tables.render import to_markdown

    result = reproduce_table(load_table("thesis-6.1"), "paper", [])
    claim = next(c for c in evaluate_claims(result) if c.id == "fid-rie")
    assert claim.source.startswith("CXR-IRGen paper abstract")
    assert "stated in: CXR-IRGen paper abstract" in to_markdown(result)


def test_a_claim_over_seeds_is_the_mean_of_per_seed_claims_with_a_t_interval(record_factory) -> None:
    """Three seeds of both arms: the claim is computed at each seed (arms paired by seed), its mean and 95 % t
    interval are shown; a seed only one arm has does not count."""
    from scipy import stats

    from bench.tables.render import to_markdown

    table = load_table("thesis-4.5")
    models = ["unet", "attention-unet", "dcsau-net", "xbound-former"]
    orig = {0: 0.70, 1: 0.72, 2: 0.69}
    aug = {0: 0.72, 1: 0.72, 2: 0.71, 3: 0.90}  # seed 3 has no real-only run
    records = [record_factory(method="real-only", seed=s, per_model={m: {"iou": v, "dice": v} for m in models})
               for s, v in orig.items()]
    records += [record_factory(method="didgen", seed=s, per_model={m: {"iou": v, "dice": v} for m in models})
                for s, v in aug.items()]
    result = reproduce_table(table, "mini", records)
    claim = next(c for c in evaluate_claims(result) if c.id == "gain-iou-s1k")
    per_seed = [aug[s] / orig[s] - 1 for s in (0, 1, 2)]
    assert claim.seeds == (0, 1, 2) and claim.per_seed == pytest.approx(per_seed)
    assert claim.from_reproduced == pytest.approx(sum(per_seed) / 3)
    sem = stats.sem(per_seed)
    low, high = stats.t.interval(0.95, 2, loc=sum(per_seed) / 3, scale=sem)
    assert claim.ci == pytest.approx((low, high))
    text = to_markdown(result)
    assert f"[95% CI {low * 100:+.2f}%, {high * 100:+.2f}%; 3 seeds]" in text
    assert "per seed: s0 +2.86%, s1 +0.00%, s2 +2.90%" in text
    assert claim.reading == "unresolved: the 95% interval contains 0" and low < 0 < high
    assert "| Reading over seeds |" in text and "| unresolved: the 95% interval contains 0 |" in text
    # one common seed: the point from the cells' means (DiDGen's over seeds 0 and 3), no interval
    one = reproduce_table(table, "mini", [r for r in records if r["seed"] in (0, 3)])
    claim = next(c for c in evaluate_claims(one) if c.id == "gain-iou-s1k")
    assert claim.ci is None and claim.seeds == () and claim.from_reproduced == pytest.approx((0.72 + 0.90) / 2 / 0.70 - 1)
    assert claim.reading == "unresolved: one seed, no interval"


@pytest.mark.parametrize(("aug", "reading"), [
    ({0: 0.72, 1: 0.745, 2: 0.70}, "supported"),  # +2.9 %, +3.5 %, +1.4 %: the interval lies above 0
    ({0: 0.68, 1: 0.70, 2: 0.66}, "contradicted"),  # -2.9 %, -2.8 %, -4.3 %: below 0, against the stated +3.26 %
])
def test_a_gain_claim_reads_its_direction_from_the_interval_over_seeds(record_factory, aug, reading) -> None:
    models = ["unet", "attention-unet", "dcsau-net", "xbound-former"]
    orig = {0: 0.70, 1: 0.72, 2: 0.69}
    records = [record_factory(method=m, seed=s, per_model={k: {"iou": v, "dice": v} for k in models})
               for m, arm in (("real-only", orig), ("didgen", aug)) for s, v in arm.items()]
    claim = next(c for c in evaluate_claims(reproduce_table(load_table("thesis-4.5"), "mini", records))
                 if c.id == "gain-iou-s1k")
    assert claim.stated > 0 and claim.reading == reading


def test_a_seed_whose_reference_cell_is_0_is_left_out_of_the_claim_over_seeds(record_factory) -> None:
    """Table 4.3's MEL F1 claim: a classifier that never predicts MEL at one seed has F1 0 there, so its relative
    gain is undefined at that seed. That seed is left out (and said to be); the other seeds still give the claim.
    Before, the ValueError escaped and broke `bench table` and the leaderboard's paper-table page."""
    models = ["unet", "attention-unet", "dcsau-net", "xbound-former"]
    orig = {0: 0.70, 1: 0.72, 2: 0.69}
    aug = {0: 0.72, 1: 0.73, 2: 0.71}
    records = [record_factory(method=m, seed=s, per_model={k: {"iou": 0.0 if (m, s, k) == ("real-only", 2, "unet")
                                                                    else v, "dice": v} for k in models})
               for m, arm in (("real-only", orig), ("didgen", aug)) for s, v in arm.items()]
    claim = next(c for c in evaluate_claims(reproduce_table(load_table("thesis-4.5"), "mini", records))
                 if c.id == "gain-iou-s1k")
    assert claim.seeds == (0, 1) and claim.per_seed == pytest.approx([0.72 / 0.70 - 1, 0.73 / 0.72 - 1])
    assert claim.detail == "seed 2 left out: a reference cell is 0 there, so the relative gain is undefined"
