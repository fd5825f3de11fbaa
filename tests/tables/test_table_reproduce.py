"""bench/tables/reproduce.py and bench/tables/paper.py: cell queries, matching, seed aggregation, protocols."""
from __future__ import annotations

import math
import statistics

import pytest

from bench.tables.paper import TableError, for_profile, load_table, merge_queries, parse_table
from bench.tables.reproduce import load_records, reproduce_table, resolve_metric


def seg_record(make, method, seed, iou_by_model, n_real=200, protocol="a" * 64, created="2026-11-23T10:00:00Z"):
    per_model = {m: {"iou": v, "dice": v + 0.1} for m, v in iou_by_model.items()}
    return make(method=method, seed=seed, per_model=per_model, protocol=protocol, created=created,
                n={"real_train": n_real, "generated": 400, "test": 300},
                metrics={"iou": statistics.fmean(iou_by_model.values()), "dice": statistics.fmean(iou_by_model.values()) + 0.1})


def test_cell_query_merges_table_row_column_and_resolves_profile() -> None:
    table = load_table("thesis-4.5")
    q = table.cell_query("iou-s1k-unet", "original", "mini")
    assert (q.task, q.dataset, q.method, q.model, q.metric) == ("seg-aug", "derm-mini", "real-only", "unet", "iou")
    assert dict(q.setting) == {"n_real": 200}
    paper = table.cell_query("iou-s1k-unet", "didgen", "paper")
    assert (paper.dataset, paper.method, dict(paper.setting)) == ("isic2018-task1", "didgen", {"n_real": 1000})
    # smoke falls back to the mini entry; a profile without an entry is not applicable
    assert table.cell_query("iou-s1k-unet", "original", "smoke").dataset == "derm-mini"
    prostate = load_table("diffboost-2").cell_query("prostate-baseline", "dice", "mini")
    assert (prostate.dataset, prostate.model, dict(prostate.setting)) == \
        ("mri-prostate-mini", "monai-attention-unet", {"folds": 3})
    assert load_table("meddiff-ft-1").cell_query("upernet-original", "ph2", "mini").dataset == "ph2-mini"
    assert load_table("meddiff-ft-1").cell_query("upernet-original", "ph2", "paper").dataset == "ph2"
    paper_only = parse_table({"id": "x", "caption": "c", "source": {}, "rows": [{"key": "r", "label": "R"}],
                              "columns": [{"key": "c", "label": "C"}], "cells": {},
                              "query": {"task": "seg-aug", "method": "real-only", "metric": "dice",
                                        "dataset": {"paper": "ph2"}}})
    assert paper_only.cell_query("r", "c", "mini") is None and paper_only.cell_query("r", "c", "paper") is not None
    assert for_profile({"paper": 1}, "mini") is None and for_profile(5, "mini") == 5
    assert merge_queries({"setting": {"a": 1}, "metric": "x"}, {"setting": {"b": 2}, "metric": "y"}) == \
        {"setting": {"a": 1, "b": 2}, "metric": "y"}


def test_seed_mean_std_and_delta(record_factory) -> None:
    table = load_table("thesis-4.5")
    records = [seg_record(record_factory, "real-only", 0, {"unet": 0.70, "attention-unet": 0.60}),
               seg_record(record_factory, "real-only", 1, {"unet": 0.72, "attention-unet": 0.62})]
    result = reproduce_table(table, "mini", records)
    cell = result.cell("iou-s1k-unet", "original")
    assert cell.status == "ok" and cell.seeds == (0, 1)
    assert math.isclose(cell.mean, 0.71) and math.isclose(cell.std, statistics.stdev([0.70, 0.72]))
    assert math.isclose(cell.delta, 0.71 - 0.716)
    # the S_2.5k row asks for n_real 520: the 200-pair runs do not fill it
    assert result.cell("iou-s2.5k-unet", "original").status == "no-run"
    # no DCSAU-Net in these records, no DiDGen run at all
    assert result.cell("iou-s1k-dcsau-net", "original").status == "no-run"
    assert result.cell("iou-s1k-unet", "didgen").status == "no-run"
    assert result.n_reproduced == 4  # iou and dice x unet and attention-unet at S_1k


def test_protocols_are_never_averaged_together(record_factory) -> None:
    table = load_table("thesis-4.5")
    records = [seg_record(record_factory, "real-only", s, {"unet": 0.70 + s / 100}) for s in (0, 1)]
    records.append(seg_record(record_factory, "real-only", 7, {"unet": 0.10}, protocol="f" * 64))
    cell = reproduce_table(table, "mini", records).cell("iou-s1k-unet", "original")
    assert cell.seeds == (0, 1) and cell.protocol == "a" * 64
    assert "1 record(s) of 1 other protocol" in cell.note
    assert math.isclose(cell.mean, 0.705)


def test_rerun_of_a_seed_keeps_the_newest_record(record_factory) -> None:
    table = load_table("thesis-4.5")
    old = seg_record(record_factory, "real-only", 0, {"unet": 0.50}, created="2026-01-01T00:00:00Z")
    new = seg_record(record_factory, "real-only", 0, {"unet": 0.60}, created="2026-06-01T00:00:00Z")
    new["run_id"] += "x"
    cell = reproduce_table(table, "mini", [old, new]).cell("iou-s1k-unet", "original")
    assert cell.seeds == (0,) and math.isclose(cell.mean, 0.60) and cell.std is None


def test_an_ablation_of_the_same_protocol_does_not_fill_the_default_cell(record_factory) -> None:
    # DiDGen ca_guidance=false (Table 4.7's "without") shares the protocol and seed of the default run,
    # and was run later; Table 4.5's DiDGen column must still read the default run.
    table = load_table("thesis-4.5")
    default = record_factory(method="didgen", n={"real_train": 520}, method_config={"ca_guidance": True},
                             per_model={"unet": {"iou": 0.70}}, created="2026-01-01T00:00:00Z")
    ablation = record_factory(method="didgen", n={"real_train": 520}, method_config={"ca_guidance": False},
                              per_model={"unet": {"iou": 0.60}}, created="2026-06-01T00:00:00Z")
    ablation["run_id"] += "x"
    cell = reproduce_table(table, "mini", [default, ablation]).cell("iou-s2.5k-unet", "didgen")
    assert cell.seeds == (0,) and math.isclose(cell.mean, 0.70)
    without = reproduce_table(load_table("thesis-4.7"), "mini", [default, ablation]).cell("iou-unet", "without")
    assert math.isclose(without.mean, 0.60)


def test_an_ablation_under_another_protocol_does_not_displace_the_default_run(record_factory) -> None:
    # the same as above across protocols (one seed each): the newer ablation's protocol is not chosen for the
    # default cell (cxr-irgen condition_dropout in the image protocol beside the default pair-protocol run)
    table = load_table("thesis-4.5")
    default = record_factory(method="didgen", n={"real_train": 520}, method_config={"ca_guidance": True},
                             per_model={"unet": {"iou": 0.70}}, created="2026-01-01T00:00:00Z")
    ablation = record_factory(method="didgen", n={"real_train": 520}, method_config={"ca_guidance": False},
                              per_model={"unet": {"iou": 0.60}}, created="2026-06-01T00:00:00Z", protocol="f" * 64)
    ablation["run_id"] += "x"
    cell = reproduce_table(table, "mini", [default, ablation]).cell("iou-s2.5k-unet", "didgen")
    assert cell.seeds == (0,) and math.isclose(cell.mean, 0.70) and cell.protocol == default["protocol_hash"]
    assert "1 record(s) of 1 other protocol" in cell.note


def test_setting_keys_read_config_and_percent_scale(record_factory) -> None:
    table = load_table("thesis-4.7")
    rec = record_factory(method="didgen", n={"real_train": 520}, method_config={"ca_guidance": False},
                         per_model={"unet": {"iou": 0.7}}, metrics={"lpips_diversity[masks,alex-random]": 0.2})
    result = reproduce_table(table, "mini", [rec])
    assert result.cell("iou-unet", "without").status == "ok"
    assert result.cell("iou-unet", "with").status == "no-run"
    assert math.isclose(result.cell("mask-lpips", "without").mean, 0.2)
    md = load_table("meddiff-ft-1")
    rec = record_factory(method="real-only", n={"real_train": 50, "generated": 0}, per_model={"upernet": {"dice": 0.9}})
    cell = reproduce_table(md, "mini", [rec]).cell("upernet-original", "isic2018")
    assert cell.status == "ok" and math.isclose(cell.mean, 90.0)  # Dice printed in percent


def test_metric_family_resolution() -> None:
    assert resolve_metric({"fd[mini-clip]": 3.0}, "fd") == "fd[mini-clip]"
    assert resolve_metric({"ssim[range=1]": 0.1, "ssim[range=255]": 0.9}, "ssim") is None  # ambiguous
    assert resolve_metric({"iou": 1.0, "iou[S_0.6]": 0.5}, "iou") == "iou"
    assert resolve_metric({"iou": 1.0}, "iou[S_0.6]") is None


def test_load_records_skips_invalid_and_duplicates(tmp_path, record_factory, write_record_dir) -> None:
    rec = record_factory()
    write_record_dir(tmp_path / "a", [rec])
    write_record_dir(tmp_path / "b", [rec])
    (tmp_path / "a" / "broken.json").write_text("{not json")
    records = load_records([tmp_path / "a", tmp_path / "b", tmp_path / "missing"])
    assert [r["run_id"] for r in records] == [rec["run_id"]]
    assert records[0]["_path"].endswith(f"{rec['run_id']}.json")


def test_unknown_table_suggests_and_malformed_tables_are_refused() -> None:
    with pytest.raises(TableError, match="Did you mean: thesis-4.5"):
        load_table("thesis-4.55")
    with pytest.raises(TableError, match="not a row of the layout"):
        parse_table({"id": "x", "caption": "c", "source": {}, "rows": [{"key": "r", "label": "R"}],
                     "columns": [{"key": "c", "label": "C"}], "cells": {"zz": {"c": {"printed": "1", "value": 1.0, "decimals": 0}}}})
    with pytest.raises(TableError, match="does not match printed"):
        parse_table({"id": "x", "caption": "c", "source": {}, "rows": [{"key": "r", "label": "R"}],
                     "columns": [{"key": "c", "label": "C"}], "cells": {"r": {"c": {"printed": "0.5", "value": 0.6, "decimals": 1}}}})


def test_scoped_setting_keys_read_only_their_config() -> None:
    """``method.prompt`` must not match derm-quality's task ``prompt`` (Table 4.1's DiDGen rows)."""
    from bench.tables.reproduce import setting_value

    record = {"config": {"task": {"prompt": "An image of <lesion> on <skin>."}, "method": {"prompt": "prefix"}},
              "n": {"real_train": 200}}
    assert setting_value(record, "prompt") == (True, "An image of <lesion> on <skin>.")
    assert setting_value(record, "method.prompt") == (True, "prefix")
    assert setting_value(record, "task.prompt") == (True, "An image of <lesion> on <skin>.")
    assert setting_value(record, "method.n_real") == (False, None)
    assert setting_value(record, "n_real") == (True, 200)


def test_best_of_keeps_one_trial_per_column(record_factory) -> None:
    """Table 3.1: each method's best trial of a sweep labelled trial_selection=test-metrics, chosen on the
    single-concept CLIP-I; every row of the column comes from that trial; unlabelled runs are not trials."""
    table = load_table("thesis-3.1")

    def concept(lr, clip_i, clip_t, label="test-metrics"):
        return record_factory(task="concept", dataset="concept-mini", method="custom-diffusion", seed=0,
                              metrics={"clip_i[mini-clip,single]": clip_i, "clip_t[mini-clip,single]": clip_t},
                              task_config={"trial_selection": label}, method_config={"lr": lr},
                              created=f"2026-12-05T1{int(lr * 1e5)}:00:00Z", run_id=f"cd-lr{lr}")

    records = [concept(5e-5, 0.40, 0.30), concept(1e-4, 0.50, 0.20), concept(1e-5, 0.90, 0.90, label="none")]
    result = reproduce_table(table, "mini", records)
    best, other = result.cell("single-clip-i", "custom-diffusion"), result.cell("single-clip-t", "custom-diffusion")
    assert best.mean == pytest.approx(0.50) and other.mean == pytest.approx(0.20)  # same trial, not the best CLIP-T
    assert "best of 2 trial(s)" in best.note
    assert table.cell_query("single-clip-i", "custom-diffusion", "mini").best_of == ("clip_i[mini-clip,single]", True)


def _fold_record(make, method, fold, dice, seed=0, folds=3, created="2026-12-06T01:00:00Z"):
    task = {"folds": folds, "fold": fold, "segmenters": ["monai-attention-unet"]}
    return make(dataset="mri-prostate-mini", method=method, seed=seed, protocol=f"{fold}" * 64, created=created,
                run_id=f"seg-aug__{method}__mri-prostate-mini__mini__s{seed}__f{fold}",
                task_config=task, per_model={"monai-attention-unet": {"dice": dice, "hd95": 10.0 * (fold + 1)}},
                metrics={"dice": dice}, comparisons={"relative_gain": {"dice": 0.5}})


def test_a_cross_validated_arm_fills_its_cell_with_the_mean_of_its_folds(record_factory) -> None:
    """DiffBoost runs one record per fold (it fits a generator per fold): the cell is the mean of fold means
    (spec B.9), only once every fold is there; an all-fold record (Baseline) is read as it is."""
    table = load_table("diffboost-2")
    folds = [_fold_record(record_factory, "diffboost", i, d) for i, d in enumerate([0.60, 0.70, 0.83])]
    baseline = record_factory(dataset="mri-prostate-mini", method="real-only", protocol="b" * 64,
                              task_config={"folds": 3, "fold": None},
                              per_model={"monai-attention-unet": {"dice": 0.55}}, metrics={"dice": 0.55})
    result = reproduce_table(table, "mini", [*folds, baseline])
    cell = result.cell("prostate-diffboost", "dice")
    assert cell.status == "ok" and cell.mean == pytest.approx(71.0) and cell.seeds == (0,)
    assert cell.run_ids == tuple(r["run_id"] for r in folds)
    assert result.cell("prostate-diffboost", "hd95").mean == pytest.approx(20.0)
    assert cell.records[0]["comparisons"] == {}  # a fold's paired test is not the arm's
    assert result.cell("prostate-baseline", "dice").mean == pytest.approx(55.0)
    # a missing fold leaves the arm out, and says so; a newer rerun of a fold replaces the older one
    partial = reproduce_table(table, "mini", folds[:2]).cell("prostate-diffboost", "dice")
    assert partial.status == "no-run" and "fold(s) 2 of 3 not run" in partial.note
    rerun = _fold_record(record_factory, "diffboost", 2, 0.53, created="2026-12-07T01:00:00Z")
    assert reproduce_table(table, "mini", [*folds, rerun]).cell("prostate-diffboost", "dice").mean == \
        pytest.approx(61.0)


def test_cells_a_reader_compares_read_one_protocol_while_a_new_one_is_filling(record_factory) -> None:
    """A new protocol's campaign (the calibrated world) has only its real-only runs, with more seeds: the Original
    column must not switch to it while the DiDGen column still reads the old protocol, or the column comparison and
    the derived gain mix two worlds. Once the new protocol fills as many cells, its seeds win."""
    table = load_table("thesis-4.5")
    old = [seg_record(record_factory, "real-only", 0, {"unet": 0.92}),
           seg_record(record_factory, "didgen", 0, {"unet": 0.93})]
    new = [seg_record(record_factory, "real-only", s, {"unet": 0.70 + s / 100}, protocol="f" * 64) for s in (0, 1, 2)]
    result = reproduce_table(table, "mini", old + new)
    original, didgen = result.cell("iou-s1k-unet", "original"), result.cell("iou-s1k-unet", "didgen")
    assert original.protocol == didgen.protocol == "a" * 64 and original.seeds == (0,)
    assert "3 record(s) of 1 other protocol" in original.note
    new += [seg_record(record_factory, "didgen", s, {"unet": 0.72 + s / 100}, protocol="f" * 64) for s in (0, 1, 2)]
    result = reproduce_table(table, "mini", old + new)
    original, didgen = result.cell("iou-s1k-unet", "original"), result.cell("iou-s1k-unet", "didgen")
    assert original.protocol == didgen.protocol == "f" * 64 and original.seeds == didgen.seeds == (0, 1, 2)


def test_table_6_5_ablation_records_never_fill_the_default_row(record_factory) -> None:
    """Table 6.3 / 6.5's CXR-IRGen (F) row is the default prior (latent input, MSE + 0.01 (1 - cos)): a loss-mse or
    raw-image ablation record of the same protocol must not fill it (it did, as that row's only 'seed')."""
    base = {"report_section": "findings", "prior_input": "latent", "prior_loss": "mse+cos"}

    def rec(run_id, **method):
        return record_factory(task="cxr", dataset="cxr-mini", method="cxr-irgen", run_id=run_id,
                              task_config={"input": "real"}, method_config={**base, **method},
                              metrics={"bleu1": {"default": 0.39, "mse": 0.38, "image": 0.37}[run_id]})

    for table_id in ("thesis-6.5", "thesis-6.3"):
        result = reproduce_table(load_table(table_id), "mini", [rec("mse", prior_loss="mse"), rec("image", prior_input="image")])
        f_row = [c for (row, _), c in result.cells.items() if row == "cxr-irgen-f" and c.run_ids]
        assert f_row == [], table_id
        result = reproduce_table(load_table(table_id), "mini", [rec("mse", prior_loss="mse"), rec("default")])
        (cell,) = [c for (row, col), c in result.cells.items() if row == "cxr-irgen-f" and col == "bleu-1"]
        assert tuple(cell.run_ids) == ("default",) and cell.mean == pytest.approx(0.39)


def test_cxr_irgen_rows_read_condition_dropout_as_zero_in_records_older_than_the_option(record_factory) -> None:
    """Tables 6.1-6.5 pin ``method.condition_dropout: 0`` (the thesis trains no CFG branch): a record written before
    the option existed has no such key and still fills its row; a condition-dropout run never does."""
    from bench.tables.reproduce import setting_value

    unet = {"backbone": "unet", "steps": 1000, "rie": False}

    def rec(run_id, seed=0, **method):  # other seeds: without the pin the dropout run would count as a seed
        return record_factory(task="cxr", dataset="cxr-mini", method="cxr-irgen", run_id=run_id, seed=seed,
                              method_config={**unet, **method},
                              metrics={"fd[mini-clip]": {"old": 29.0, "dropout": 15.0}[run_id]})

    old, dropout = rec("old"), rec("dropout", seed=1, condition_dropout=0.1)
    assert "condition_dropout" not in old["config"]["method"]
    assert setting_value(old, "method.condition_dropout") == (True, 0.0)
    assert setting_value(old, "condition_dropout") == (True, 0.0)
    assert setting_value({"config": {"method": {}}}, "condition_dropout") == (False, None)  # no ids: nothing filled
    result = reproduce_table(load_table("thesis-6.1"), "mini", [old, dropout])
    cells = [c for (row, _), c in result.cells.items() if row == "unet-5k-norie" and c.run_ids]
    assert cells and all(tuple(c.run_ids) == ("old",) for c in cells)
