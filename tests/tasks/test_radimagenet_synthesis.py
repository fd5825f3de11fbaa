"""radimagenet-synthesis (DiffBoost Table I): edge map -> image, scored against the original at data range 0-1."""
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.runner import RunConfig, load_shard, run_one


def _shards(work_dir: Path, n: int) -> list:
    folders = [p for p in (work_dir / "generate").iterdir() if (p / "shard-00000.json").exists()]
    assert len(folders) == 1
    out = [s for shard in sorted(folders[0].glob("shard-*.json")) for s in load_shard(shard.with_suffix(""))]
    assert len(out) == n
    return out


def _rows(record: dict, work_dir: Path) -> list[dict]:
    import csv

    with (work_dir / "records" / record["per_sample_file"]).open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("method", ["pix2pix", "diffboost"])
def test_smoke_run_scores_equal_the_libraries_on_the_saved_images(tmp_path, method):
    """End to end in smoke; every per-image score and headline mean equals torchmetrics / pytorch-msssim called
    directly on the stored reconstructions and the originals; `bench submit`'s check recomputes the headline."""
    import torch.nn.functional as F
    from pytorch_msssim import ms_ssim, ssim
    from torchmetrics.functional import mean_absolute_error, mean_squared_error

    from bench.data.pretrain_mix import PretrainMixMini
    from bench.leaderboard.checks import check_scores, self_consistency

    record, _ = run_one(RunConfig(task="radimagenet-synthesis", method=method, profile="smoke", work_dir=tmp_path,
                                  threads=1, progress=False))
    test = PretrainMixMini(image_size=64, sizes={"train": 8, "val": 2, "test": 4}).load("test")
    fake = torch.stack([F.interpolate(s.image[None], size=(64, 64), mode="bilinear", antialias=True,
                                      align_corners=False)[0].clamp(0, 1) for s in _shards(tmp_path, len(test))])
    real = torch.stack([s.image.expand(3, -1, -1) for s in test])  # cxr-mini is grey: scored on 3 equal channels
    expected = {
        "mae": torch.stack([mean_absolute_error(f.double(), r.double()) for f, r in zip(fake, real)]),
        "mse": torch.stack([mean_squared_error(f.double(), r.double()) for f, r in zip(fake, real)]),
        "ssim[range=1]": ssim(fake, real, data_range=1.0, size_average=False).double(),
        "ms_ssim[win=3]": ms_ssim(fake, real, data_range=1.0, win_size=3, size_average=False).double()}
    expected["rmse"] = expected["mse"].sqrt()
    rows = _rows(record, tmp_path)
    assert set(record["metrics"]) == set(expected)
    for key, values in expected.items():
        got = {r["id"]: float(r["value"]) for r in rows if r["metric"] == key}
        assert [got[i] for i in test.ids] == pytest.approx(values.tolist(), abs=1e-6), key
        assert record["metrics"][key] == pytest.approx(float(values.mean()), abs=1e-6), key
    assert {k: v["higher_is_better"] for k, v in record["metric_info"].items()} == {
        "mae": False, "mse": False, "rmse": False, "ssim[range=1]": True, "ms_ssim[win=3]": True}
    assert record["comparisons"]["edges"]["edge_detector"] == "canny"
    check_scores(record, rows)  # bench submit: every headline recomputes from the rows
    # and the rest of its checks (profiles, provenance, identity) on the stored record, as bench submit reads it
    from bench.store import read_record

    self_consistency(read_record(tmp_path / "records" / f"{record['run_id']}.json"), tmp_path / "records")
    from bench.tables.paper import load_table
    from bench.tables.reproduce import reproduce_table

    table = reproduce_table(load_table("diffboost-1"), "smoke", [record])  # smoke reads the mini entries
    cells = {col: table.cell(method, col) for col in ("mae", "mse", "rmse", "ssim", "ms-ssim")}
    assert all(c.status == "ok" for c in cells.values()), cells
    assert cells["ms-ssim"].mean == pytest.approx(record["metrics"]["ms_ssim[win=3]"])
    assert cells["mae"].mean == pytest.approx(record["metrics"]["mae"])
    if method == "diffboost":  # Table I scores the pretrained ControlNet, never fine-tuned on the fit set
        import json

        state = json.loads(next((tmp_path / "fit").glob("*/state/diffboost.json")).read_text())
        assert state["fine_tuned"] is False and state["fit_set"] == "the fit set is the pretraining set"
        assert state["grey_data"] is False  # grey cxr-mini first, colour worlds after: no cross-channel average


def test_conditions_are_edge_maps_of_held_out_images(tmp_path):
    from dataclasses import replace

    from bench.diffusion.edges import edge_map
    from bench.interface import RunContext
    from bench.tasks.radimagenet_synthesis import RadImageNetSynthesisConfig, RadImageNetSynthesisTask

    task = RadImageNetSynthesisTask(RadImageNetSynthesisConfig(
        dataset="pretrain-mix-mini", dataset_options={"sizes": {"train": 3, "test": 2}}, image_size=64, edge_size=32,
        edge_detector="canny", edge_sigma=1.0, ms_ssim_window=3))
    data = task.load(RunContext())
    conds = task.conditions(data, RunContext())
    train_ids = {s.meta["id"] for s in data.splits["train"]}
    assert len(conds) == 6 and not train_ids & {c.meta["source_id"] for c in conds}
    assert all(c.reference is None and c.mask is None and c.edges.shape == (3, 32, 32) for c in conds)
    edge_test = data.extra["edge_test"]
    assert torch.equal(conds[0].edges, edge_map(edge_test[0].image, "canny", 1.0))
    assert {c.prompt for c in conds} == {"Chest, X-ray", "Skin, Dermoscopy", "Objects, Photo"}
    fit = task.fit_set(data)
    assert torch.equal(fit[0].meta["edges"], edge_map(data.splits["train"][0].image, "canny", 1.0))
    sub = RadImageNetSynthesisTask(replace(task.config, n_test=4, n_fit=5)).load(RunContext())  # seeded subsets
    assert len(sub.splits["train"]) == 5 and sub.extra["edge_test"].ids == sub.splits["test"].ids
    assert len(sub.splits["test"]) == 4 and set(sub.splits["test"].ids) <= set(data.splits["test"].ids)


def test_the_mix_train_split_is_diffboosts_pretraining_set():
    from bench.data.pretrain_mix import PretrainMixMini
    from methods.diffboost.train import mini_world_pairs

    samples, prompts = mini_world_pairs(("cxr-mini", "derm-mini-99", "generic-world"), 3, 32)
    mix = PretrainMixMini(image_size=32, sizes={"train": 3, "test": 3})
    assert [s.meta["id"] for s in samples] == mix.load("train").ids
    assert prompts == [s.prompt for s in mix.load("train")]
    assert not set(mix.load("train").ids) & set(mix.load("test").ids)


def test_edge_tasks_need_methods_that_follow_edges():
    from bench.registry import METHODS, TASKS

    task_cls = TASKS.get("radimagenet-synthesis")
    task = task_cls(task_cls.Config(edge_detector="canny"))
    assert task.incompatibility(METHODS.get("diffboost").capabilities) is None
    assert task.incompatibility(METHODS.get("pix2pix").capabilities) is None
    why = task.incompatibility(METHODS.get("controlnet").capabilities)
    assert "conditions on ['edges']" in why
    derm = TASKS.get("derm-quality")
    assert "requires one of ['mask', 'reference'] or ['edges']" in derm(derm.Config()).incompatibility(
        METHODS.get("diffboost").capabilities)


def test_missing_radimagenet_folder_is_one_error_line(tmp_path):
    (tmp_path / "data").mkdir()
    args = ["run", "--task", "radimagenet-synthesis", "--method", "pix2pix", "--profile", "paper", "--data-root",
            str(tmp_path / "data"), "--work-dir", str(tmp_path / "w"), "--threads", "1", "--no-progress", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--set", "task.edge_detector=canny"])
    lines = [ln for ln in result.output.splitlines() if ln.strip() and not ln.lstrip().startswith(("INFO", "WARNING"))]
    assert result.exit_code == 2 and len(lines) == 1, result.output  # (the paper profile warns it wants a GPU)
    assert lines[0].startswith("error: ") and "radimagenet" in lines[0] and "missing folder" in lines[0]
    assert not list((tmp_path / "w").glob("**/records/*.json"))
    no_hed = CliRunner().invoke(app, args)  # the paper profile's HED edges need the local weight file
    assert no_hed.exit_code == 2 and [ln for ln in no_hed.output.splitlines() if ln.startswith("error: ")] == [
        "error: task.edge_detector=hed needs task.hed_weights (the local network-bsds500.pth); or set "
        "task.edge_detector=canny"]


def _fake_radimagenet(root: Path) -> None:
    """RadImageNet's layout in miniature: radiology_ai/<modality>/<organ>/<label>/*.png and the official split CSVs."""
    import numpy as np
    from PIL import Image

    rows = {"train": ["radiology_ai/CT/abd/Arterial_pathology/a.png", "radiology_ai/US/thyroid_nodule/b.png",
                      "radiology_ai/MR/af/Plantar_fascia/c.png"],
            "val": ["radiology_ai/MR/af/Plantar_fascia/e.png"],
            "test": ["radiology_ai/CT/abd/normal/d.png", "radiology_ai/US/thyroid_nodule/f.png"]}
    rng = np.random.default_rng(0)
    for split, files in rows.items():
        for rel in files:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)).save(root / rel)
        (root / f"RadiologyAI_{split}.csv").write_text("filename,label\n" + "".join(f"{f},x\n" for f in files))


def test_paper_path_on_a_fake_radimagenet_with_hed_edges(tmp_path):
    """The paper profile's code path (RadImageNet loader, official splits, folder prompts, HED edges from a weight
    file in the BSDS500 layout, random here) with Pix2Pix shrunk to seconds."""
    from bench.diffusion.hed import HED

    _fake_radimagenet(tmp_path / "data" / "radimagenet")
    torch.manual_seed(0)
    torch.save({k.replace("net", "module", 1): v for k, v in HED().state_dict().items()}, tmp_path / "hed.pth")
    sets = [f"task.hed_weights={tmp_path / 'hed.pth'}", "task.image_size=64", "task.ms_ssim_window=3",
            "method.resolution=32", "method.num_downs=5", "method.ngf=8", "method.ndf=8", "method.epochs=1",
            "method.decay_epochs=0", "method.batch_size=2"]
    record, _ = run_one(RunConfig(task="radimagenet-synthesis", method="pix2pix", profile="paper", sets=sets,
                                  data_root=tmp_path / "data", work_dir=tmp_path / "w", threads=1, progress=False))
    assert record["dataset"]["id"] == "radimagenet" and record["n"] == {"generated": 2, "test": 2}
    assert record["comparisons"]["edges"]["edge_detector"] == "hed"
    rows = _rows(record, tmp_path / "w")
    assert sorted({r["id"] for r in rows}) == ["radiology_ai/CT/abd/normal/d.png", "radiology_ai/US/thyroid_nodule/f.png"]
    from bench.data.radimagenet import RadImageNet

    test = RadImageNet(root=tmp_path / "data", image_size=64).load("test")
    assert [s.prompt for s in test] == ["CT, abdomen, normal", "US, thyroid_nodule"]
    assert test[0].image.shape == (3, 64, 64)
