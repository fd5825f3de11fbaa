"""bench/leaderboard/site.py: pages, protocol separation, links, artefacts and bias plots."""
from __future__ import annotations

import json
import re

import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.leaderboard.cli import leaderboard_app
from bench.leaderboard.site import SiteError, bias_plot, build_site


def test_site_pages_links_and_protocol_separation(tmp_path, site_records) -> None:
    summary = build_site([site_records(tmp_path / "records")], tmp_path / "site", generated="2026-11-23T12:00:00Z")
    site = tmp_path / "site"
    assert summary.n_records == 5 and set(summary.pages) == {"index.html", "task-seg-aug.html", "task-lowcontrast.html", "tables.html"}
    index = (site / "index.html").read_text()
    assert 'href="task-seg-aug.html"' in index and "2026-11-24T08:00:00Z" in index  # newest date of the task
    assert index.count('href="records/') == 5
    page = (site / "task-seg-aug.html").read_text()
    # two protocols: two ranked tables, never merged
    assert page.count('<table class="sortable leaderboard">') == 2
    first, second = page.split('<table class="sortable leaderboard">')[1:3]
    assert "0.8200 ±\u00a00.0283" in first and "r-c-0" not in first  # classic-aug: mean ± std over seeds 0, 1
    assert "0.5000" in second and "r-a-0" not in second
    assert "aaaaaaaaaaaa" in page and "bbbbbbbbbbbb" in page and "mini" in page
    for link in re.findall(r'href="(records/[^"]+)"', page + index):
        assert (site / link).is_file(), link
    assert json.loads((site / "records" / "r-a-0.json").read_text())["run_id"] == "r-a-0"
    # only the real PNG inside the record folder is shown
    images = sorted(p.name for p in (site / "img").iterdir())
    assert images == ["r-a-0.samples.png", "r-lc-0.bias.png"]
    assert "dice ↑" in page


def test_bias_plot_needs_ita_and_iou(tmp_path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("model,ita_difference,iou\nunet,10,0.5\nunet,50,0.9\nunet,-5,0.3\n")
    assert bias_plot(csv, tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").size[0] > 100
    rows = ["model,arm,split,id,dice,iou,pretrained_iou,ita_difference"]
    rows += [f"{m},{arm},{split},{i},0.5,{0.9 if arm == 'finetuned' else 0.1},{0.2 + i / 10},{i * 10 - 5}"
             for m in ("unet", "fat-net") for arm in ("pretrained", "finetuned") for split in ("test", "ham10000") for i in range(8)]
    csv.write_text("\n".join(rows) + "\n")
    assert bias_plot(csv, tmp_path / "lc.png")
    assert Image.open(tmp_path / "lc.png").size[0] > 4 * Image.open(tmp_path / "b.png").size[0] * 0.9  # 4 panels
    csv.write_text("model,dice\nunet,0.5\n")
    assert not bias_plot(csv, tmp_path / "c.png") and not (tmp_path / "c.png").exists()


def test_refuses_to_overwrite_a_foreign_folder_and_rebuilds_its_own(tmp_path) -> None:
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(SiteError, match="not built by bench leaderboard build"):
        build_site([], foreign)
    assert (foreign / "keep.txt").exists()
    out = tmp_path / "site"
    build_site([], out)
    (out / "stale.html").write_text("old")
    build_site([], out)
    assert not (out / "stale.html").exists() and "No records yet" in (out / "index.html").read_text()


def test_cli_build(tmp_path, site_records) -> None:
    records = site_records(tmp_path / "records")
    result = CliRunner().invoke(leaderboard_app, ["build", "--records", str(records), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert "built 4 page(s) from 5 record(s), 2 image(s)" in result.output


def test_config_variants_of_one_method_are_separate_rows(tmp_path) -> None:
    """DiDGen and its ca_guidance=False ablation share protocol and seed; the ablation, run later, must not
    replace the default run's row (it did: rows were keyed by method id alone)."""
    from tests.leaderboard.conftest import base_record, dump

    folder = tmp_path / "records"
    folder.mkdir()
    common = dict(method={"id": "didgen", "version": "1"}, seed=0, protocol_hash="a" * 64)
    dump(folder / "d.json", base_record(run_id="d", created="2026-11-23T10:00:00Z", metrics={"dice": 0.91},
                                        config={"task": {}, "method": {"ca_guidance": True}}, **common))
    dump(folder / "n.json", base_record(run_id="n", created="2026-11-24T10:00:00Z", metrics={"dice": 0.80},
                                        config={"task": {}, "method": {"ca_guidance": False}}, **common))
    build_site([folder], tmp_path / "site", generated="2026-11-25T00:00:00Z")
    page = (tmp_path / "site" / "task-seg-aug.html").read_text()
    rows = re.findall(r'<a href="records/[^"]+">(didgen)</a>(?:<span class="variant">([^<]*)</span>)?', page)
    assert rows == [("didgen", ""), ("didgen", "ca_guidance=False")]  # ranked: dice 0.91 before 0.80
    assert "0.9100" in page and "0.8000" in page


def test_a_gain_the_record_does_not_state_is_rebuilt_from_both_arms_per_model() -> None:
    """derm-cls states relative gains for the weighted metrics only; its ranking metric (balanced accuracy) gets the
    papers' gain (mean over classifiers of method / real-only - 1) from the per-model values of both arms."""
    from bench.leaderboard.site import recorded_gain

    record = {"method": {"id": "didgen"},
              "per_model": {"a": {"balanced_accuracy": 0.45, "f1_weighted": 0.7}, "b": {"balanced_accuracy": 0.30}},
              "comparisons": {"reference": "real-only", "relative_gain": {"f1_weighted": 0.02},
                              "reference_per_model": {"a": {"balanced_accuracy": 0.30}, "b": {"balanced_accuracy": 0.30}}}}
    assert recorded_gain(record, "f1_weighted") == 0.02
    assert recorded_gain(record, "balanced_accuracy") == pytest.approx((0.45 / 0.30 - 1 + 0.0) / 2)
    assert recorded_gain(record, "accuracy") is None  # neither stated nor in both arms
    assert recorded_gain({"per_model": {}, "comparisons": {}}, "balanced_accuracy") is None
    itself = {**record, "method": {"id": "real-only"}, "comparisons": {**record["comparisons"], "reference": "real-only"}}
    assert recorded_gain(itself, "balanced_accuracy") is None  # the real-only record is its own reference arm


def test_seeds_conditioned_on_their_own_seeds_masks_are_one_entry(tmp_path) -> None:
    """A seg-aug baseline on generated masks names the DiDGen run of its own seed (task.mask_source): its seeds are
    one entry, not one per seed (the calibrated ControlNet, ZestGuide and Attn-Refocus rows were split so)."""
    from bench.variants import variant_label
    from tests.leaderboard.conftest import base_record, dump

    folder = tmp_path / "records"
    folder.mkdir()
    for seed in (0, 1):
        task = {"conditioning": "generated-masks", "mask_source": f"seg-aug__didgen__derm-mini__mini__s{seed}__79715bda"}
        record = base_record(run_id=f"c{seed}", method={"id": "controlnet", "version": "1"}, seed=seed,
                             config={"task": task, "method": {}})
        assert "mask_source=seg-aug__didgen__derm-mini__mini__s*__79715bda" in variant_label(record)
        dump(folder / f"c{seed}.json", record)
    build_site([folder], tmp_path / "site", generated="2026-11-25T00:00:00Z")
    page = (tmp_path / "site" / "task-seg-aug.html").read_text()
    assert len(re.findall(r'<a href="records/[^"]+">controlnet</a>', page)) == 1
    assert 'href="records/c0.json">s0</a> <a href="records/c1.json">s1</a>' in page
