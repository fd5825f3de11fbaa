"""seg-aug with MedDiff-FT and DiffBoost end to end on the real PH2 copy at 32 px (issue 21): MedDiff-FT with its own
masks (conditioning none), DiffBoost with patch merging in the augmented arm, one cached real-only arm."""
import logging

import pytest

from bench.runner import RunConfig, run_one

SETS = ["task.transfer_dataset=null", "task.segmenters=[nnu-net]", "task.image_size=32", "task.n_generate=8",
        "task.loss=focal+dice"]


@pytest.mark.slow
def test_meddiff_ft_and_diffboost_on_real_ph2(shared_data, tmp_path, caplog):
    from inputs import require

    root = shared_data / "dermoscopy"
    require((root / "ph2").is_dir(), f"PH2 copy not found under {root}")

    def run(method, *sets):
        return run_one(RunConfig(task="seg-aug", method=method, profile="smoke", dataset="ph2", data_root=root,
                                 sets=[*SETS, *sets], work_dir=tmp_path, progress=False))[0]

    meddiff = run("meddiff-ft", "task.conditioning=none")
    assert meddiff["dataset"]["id"] == "ph2" and meddiff["n"]["generated"] == 8 and meddiff["n"]["test"] == 60
    assert 0 < meddiff["per_model"]["nnu-net"]["dice"] <= 1
    with caplog.at_level(logging.INFO, logger="bench.downstream.hooks"):
        diffboost = run("diffboost")
    assert diffboost["n"]["generated"] == 8 and 0 < diffboost["per_model"]["nnu-net"]["dice"] <= 1
    assert any("patch-merge (input" in r.getMessage() for r in caplog.records)
    # the real-only arm is shared (one cache entry for the two methods)
    assert diffboost["comparisons"]["reference_per_model"] == meddiff["comparisons"]["reference_per_model"]
