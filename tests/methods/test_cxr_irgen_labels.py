"""Issue 20's "the generated images' labels are recovered by a classifier trained on cxr-mini above chance": read
from the shipped ch6-mini records (docs/reproduce/ch6-mini.yaml), whose per-image classifier scores are in their
scores.csv. A cxr-irgen fit takes about 17 min on one core, too long for the suite; the records are the campaign's
runs, and each check below recomputes the record's AUROC from its per-image scores before testing it.

What holds at mini size: with SD's 10 % condition dropout (`method.condition_dropout=0.1`) the labels of the images
are recovered above chance over three seeds (two of them on their own, p = 0.001; the third reads p = 0.07); at the
code's recipe (no dropout, CFG 7.5) they are not reliably (methods/cxr_irgen/README.md): those records are checked
for what they say, not for being above chance.
"""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.metrics.cxr_auroc import PATHOLOGIES, auroc_chance_test

SHIPPED = Path(__file__).resolve().parents[2] / "results" / "leaderboard"
#: Records made before an option existed ran at its default, which they do not state.
DEFAULTS = {"condition_dropout": 0.0}


def records(method: str, **method_config) -> list[dict]:
    """Shipped cxr image records (output image or both) of ``method`` whose method config has these values."""
    out = []
    for path in sorted(SHIPPED.glob(f"cxr__{method}__cxr-mini__mini__*.json")):
        rec = json.loads(path.read_text())
        if rec["config"]["task"]["output"] == "report":
            continue
        method_config_of = {**DEFAULTS, **{k: v for k, v in rec["config"]["method"].items() if v is not None}}
        if all(method_config_of.get(k) == v for k, v in method_config.items()):
            out.append(rec)
    return out


def chance_test(rec: dict) -> dict[str, float]:
    with open(SHIPPED / rec["per_sample_file"]) as f:
        rows = [r for r in csv.DictReader(f) if r["set"] == "auroc"]
    scores = np.array([[float(r[f"score[{p}]"]) for p in PATHOLOGIES] for r in rows])
    got = auroc_chance_test(scores, [r["pathology"] for r in rows], n_permutations=1000)
    assert got["auroc"] == pytest.approx(rec["metrics"]["auroc"], abs=1e-9), rec["run_id"]  # the record's own value
    return got


def test_condition_dropout_images_carry_their_labels_above_chance_over_seeds():
    """Seeds are independent fits, so their permutation p-values combine (Fisher). Not every seed is above chance
    on its own: seed 2's fit reads AUROC 0.556, p = 0.07 (and FD 37.6 against 15.0 and 15.6); the claim is over
    the three seeds."""
    from scipy.stats import combine_pvalues

    recs = records("cxr-irgen", condition_dropout=0.1, steps=1000, rie=False)
    assert {r["seed"] for r in recs} == {0, 1, 2}, "the 3 seeds of image-f-s1000-norie-dropout (ch6-mini.yaml)"
    got = [chance_test(rec) for rec in recs]
    assert combine_pvalues([g["p"] for g in got], method="fisher").pvalue < 1e-3
    assert np.mean([g["auroc"] for g in got]) > np.mean([g["null_q99"] for g in got])


def test_the_controls_bound_the_test():
    (noise,) = records("noise")
    (oracle,) = records("world-oracle")
    assert chance_test(noise)["p"] > 0.05  # images with no information: not above chance
    got = chance_test(oracle)  # cxr-mini's own renderer from the same label vectors
    assert got["p"] < 0.01 and got["auroc"] > 0.95


def test_code_recipe_records_say_what_the_readme_says():
    """The default recipe (no condition dropout): its shipped pair runs are not reliably above chance, the 2000-step
    fit without RIE reads below it (Lung Opacity inverted; methods/cxr_irgen/README.md)."""
    recs = {(r["config"]["method"]["steps"], r["config"]["method"]["rie"]): r
            for r in records("cxr-irgen", condition_dropout=0.0, report_model="cxr-irgen", report_section="findings",
                             backbone="unet")}
    assert set(recs) == {(1000, False), (1000, True), (2000, False), (2000, True)}
    below = chance_test(recs[(2000, False)])
    assert below["auroc"] < 0.45 and below["p"] > 0.5
