"""docs/submitting.md: the example generator in the guide is a working Generator for seg-aug."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from bench.config import profile_section
from bench.interface import Condition, RunContext, check_generator_class
from bench.registry import METHODS

DOC = Path(__file__).resolve().parents[2] / "docs" / "submitting.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_example_generator_runs(tmp_path, monkeypatch) -> None:
    (python,) = blocks("python")
    (yaml_text,) = blocks("yaml")
    pkg = tmp_path / "doc_example_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "method.py").write_text(python)
    (pkg / "config.yaml").write_text(yaml_text)
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = METHODS.get("doc_example_pkg.method:ToneShift")  # the same lookup an entry point resolves to
    check_generator_class(cls)
    assert {"image", "mask"} <= cls.capabilities.returns and cls.capabilities.requires == {"mask", "reference"}
    config = cls.Config(**profile_section(pkg / "config.yaml", "mini"))
    gen = cls(config)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:10, 5:12] = True
    conds = [Condition(mask=mask, reference=torch.rand(3, 16, 16), meta={"index": i, "source_id": f"s{i}"}) for i in range(3)]
    ctx = RunContext(seed=0, work_dir=tmp_path / "work")
    gen.fit([], ctx)
    out = list(gen.generate(conds, ctx))
    again = list(gen.generate(conds, ctx))
    assert len(out) == 3 and all(s.image.shape == (3, 16, 16) and 0 <= s.image.min() and s.image.max() <= 1 for s in out)
    assert all(torch.equal(s.mask, mask) for s in out)
    assert all(torch.equal(a.image, b.image) for a, b in zip(out, again))  # seeded per condition
    assert not torch.equal(out[0].image, out[1].image)
    sys.modules.pop("doc_example_pkg.method", None)


def test_entry_point_group_and_commands_named_in_the_guide_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert '[project.entry-points."bench.methods"]' in text
    assert METHODS._group == "bench.methods"
    from bench.leaderboard import cli as lb_cli

    assert "--dry-run" in text and "dry_run" in lb_cli.submit_command.__code__.co_varnames


def _didgen_edits() -> dict:
    def seed1(r):
        r["seed"], r["run_id"] = 1, r["run_id"].replace("__s0__", "__s1__")
        r["metrics"].update(dice=0.999, iou=0.999)

    def undeclared(r):
        r["metrics"]["fd[mini-clip]"] = 3.0
        r["metric_info"]["fd[mini-clip]"] = {"higher_is_better": False}

    return {
        "seed1-0999": (seed1, None),
        "mini-as-paper": (lambda r: r.update(profile="paper", dataset={**r["dataset"], "id": "isic2018-task1"}), None),
        "mini-as-paper-profile": (lambda r: r.update(profile="paper", run_id=r["run_id"].replace("__mini__", "__paper__")), None),
        "per-model-vs-scores": (lambda r: r["per_model"]["unet"].update(dice=0.97), None),
        "no-scores": (lambda r: r.update(per_sample_file=None), None),
        "gain": (lambda r: r["comparisons"]["relative_gain"].update(dice=0.05), None),
        "ttest": (lambda r: r["comparisons"]["paired_ttest"]["dice"].update(p=1e-30), None),
        "ids": (lambda r: None, lambda t: t.replace("dm-2018-test-00007", "dm-2018-train-00007")),
        "seed3": (lambda r: r.update(seed=3), None),
        "method": (lambda r: r["method"].update(id="controlnet"), None),
        "undeclared-metric": (undeclared, None),
        "no-provenance": (lambda r: r.pop("provenance"), None),
    }


def test_the_refusals_shown_in_the_guide_are_what_bench_submit_prints(tmp_path, monkeypatch) -> None:
    """Each forged DiDGen record of the guide's table, made again: the line printed is the one the guide shows."""
    import json

    from typer.testing import CliRunner

    from bench.cli import app
    from bench.leaderboard.submit import default_leaderboard_dir
    from bench.store import with_provenance

    src = default_leaderboard_dir() / "seg-aug__didgen__derm-mini__mini__s0__e4f9b7e6.json"
    text = DOC.read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for case, (edit, scores_edit) in _didgen_edits().items():
        record = json.loads(src.read_text())
        folder = tmp_path / "sub" / case
        folder.mkdir(parents=True)
        scores = (src.parent / record["per_sample_file"]).read_text()
        for named in src.parent.glob(f"{src.stem}.*.png"):  # its sample grid: the content hashes cover it
            (folder / named.name).write_bytes(named.read_bytes())
        (folder / record["per_sample_file"]).write_text(scores_edit(scores) if scores_edit else scores)
        edit(record)
        # resealed as a forger would: anyone can recompute the content hashes, the checks below them must hold
        sealed = with_provenance(record, folder) if case != "no-provenance" else record
        (folder / "r.json").write_text(json.dumps(sealed))
        out = CliRunner().invoke(app, ["submit", f"sub/{case}/r.json", "--leaderboard", "lb"])
        line = next(ln for ln in out.output.splitlines() if ln.startswith("refused "))
        assert f"`{line}`" in text, line
