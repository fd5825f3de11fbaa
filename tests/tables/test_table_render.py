"""bench/tables/render.py: every table in every format, with and without reproduced runs."""
from __future__ import annotations

import csv
import io
from html.parser import HTMLParser

import pytest

from bench.tables.paper import load_all, load_table
from bench.tables.render import FORMATS, render, to_csv, to_html, to_latex, to_markdown
from bench.tables.reproduce import reproduce_table

TABLES = load_all()


class _Balance(HTMLParser):
    """Checks that every opened element (except void ones) is closed in order."""

    VOID = {"meta", "link", "br", "img", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


@pytest.mark.parametrize("table", TABLES, ids=[t.id for t in TABLES])
def test_every_table_renders_without_runs(table) -> None:
    result = reproduce_table(table, "mini", [])
    md = to_markdown(result)
    n_rows, n_cols = len(table.rows), len(table.columns)
    grid = [line for line in md.splitlines() if line.startswith("| ") and "reported" not in line
            and not line.startswith("| Claim")][:n_rows]
    assert len(grid) == n_rows and all(line.count(" | ") >= 3 * n_cols for line in grid)
    for cells in table.cells.values():
        for rep in cells.values():
            assert rep.printed in md
    assert "no run" in md or "n/a" in md
    assert "reproduced" not in to_csv(result).splitlines()[1]  # data rows, not headers
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert len(rows) == n_rows * n_cols and {r["status"] for r in rows} <= {"no-run", "n/a"}
    latex = to_latex(result)
    assert latex.count(r"\\") >= n_rows + 2 and "\\begin{tabular}" in latex and "_" not in latex.replace("\\_", "")
    checker = _Balance()
    checker.feed(to_html(result))
    assert checker.stack == []


def test_rendering_with_reproduced_runs(record_factory) -> None:
    table = load_table("thesis-4.5")
    recs = [record_factory(method="real-only", seed=s, per_model={"unet": {"iou": v, "dice": v + 0.1}})
            for s, v in ((0, 0.70), (1, 0.72))]
    result = reproduce_table(table, "mini", recs)
    md = render(result, "md")
    row = next(line for line in md.splitlines() if line.startswith("| IoU ↑ · S_1k · U-Net |"))
    assert "| 0.716 | 0.710 ± 0.014 (n=2) | -0.006 |" in row
    assert "2 of 96 cells reproduced from 2 record(s)" in md
    rows = list(csv.DictReader(io.StringIO(render(result, "csv"))))
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(r["row"], r["column"]) for r in ok} == {("iou-s1k-unet", "original"), ("dice-s1k-unet", "original")}
    assert ok[0]["seeds"] == "0 1" and ok[0]["n_seeds"] == "2" and ok[0]["protocol_hash"] == "a" * 64
    assert r"0.710 $\pm$ 0.014 (n=2)" in render(result, "latex")
    html = render(result, "html")
    assert 'class="ok"' in html and "0.710 ± 0.014 (n=2)" in html
    with pytest.raises(ValueError, match="unknown format"):
        render(result, "docx")
    assert set(FORMATS) == {"md", "csv", "latex", "html"}


def test_single_seed_and_other_protocol_marks(record_factory) -> None:
    table = load_table("thesis-4.6")
    recs = [record_factory(method="didgen", n={"real_train": 520}, metrics={"iou[ph2]": 0.8, "dice[ph2]": 0.9}),
            record_factory(method="didgen", seed=3, protocol="e" * 64, n={"real_train": 520}, metrics={"iou[ph2]": 0.1})]
    md = render(reproduce_table(table, "mini", recs), "md")
    assert "| 0.847 | 0.800 (n=1) † | -0.047 |" in md
    assert "| 0.913 | 0.900 (n=1) | -0.013 |" in md


def test_a_column_measured_by_a_proxy_names_it_in_the_header() -> None:
    table = load_table("thesis-4.1")
    mini = reproduce_table(table, "mini", [])
    head = to_markdown(mini).splitlines()[4]
    assert "FID ↓ reproduced as fd[mini-clip]" in head and "MS-SSIM ↑ reproduced as ms_ssim[win=3]" in head
    assert "reproduced as fd[mini-clip]" in to_html(mini)
    paper = to_markdown(reproduce_table(table, "paper", [])).splitlines()[4]
    assert "FID ↓ reproduced |" in paper and "as " not in paper
    seg = to_markdown(reproduce_table(load_table("thesis-4.5"), "mini", []))
    assert "reproduced as" not in seg  # IoU is IoU in every profile: no proxy to name


def test_a_table_whose_metric_changes_along_its_rows_names_the_proxy_per_row():
    """Table 3.1 reads CLIP-I, CLIP-T, DINO ... per row: each row label names its mini proxy once, instead of
    every column header listing all seven."""
    from bench.tables.paper import load_table
    from bench.tables.reproduce import default_record_dirs, load_records, reproduce_table
    from bench.tables.render import render

    result = reproduce_table(load_table("thesis-3.1"), "mini", load_records(default_record_dirs()))
    text = render(result, "md")
    assert "| Single concept: DINO ↑ (reproduced as dino[mini-clip-patches,single]) |" in text
    assert "Custom Diffusion reproduced |" in text and "reproduced as clip_i" not in text.split("\n|---")[0]


def test_a_proxy_in_one_row_only_is_named_on_that_row_not_on_every_column():
    """Table 4.7: IoU and Dice rows read IoU and Dice in every profile, only the mask-diversity row reads a proxy
    (LPIPS on a random AlexNet trunk): the header naming it would claim every cell of the column is that proxy."""
    text = to_markdown(reproduce_table(load_table("thesis-4.7"), "mini", []))
    head, body = text.split("\n|---", 1)
    assert "reproduced as" not in head.splitlines()[-1]
    lpips_row = next(line for line in body.splitlines() if line.startswith("| Mask LPIPS"))
    assert "(reproduced as lpips_diversity[masks,alex-random])" in lpips_row
    assert all("reproduced as" not in line for line in body.splitlines() if line.startswith(("| IoU", "| Dice")))
