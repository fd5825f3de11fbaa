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
