"""Every paper table in results/paper/ against the verbatim tables of the research specs, cell by cell.

The specs live outside the repository (``<repo>/../shared/research``); the check is
skipped with a reason when they are absent. Each table file names its spec file, the
heading that precedes the markdown table, and the number of label columns; every
row names its label cells in the spec and every column its header (or position).
The parser here is written independently of the authoring of the JSON files.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.tables.paper import load_all, table_ids

REPO = Path(__file__).resolve().parents[2]
SPEC_DIR = REPO.parent / "shared" / "research"
NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?(\s*±\s*\d+(\.\d+)?)?$")

@pytest.fixture
def needs_specs() -> None:
    from inputs import require

    require(SPEC_DIR.is_dir(), f"research specs not found at {SPEC_DIR} (they live beside the repo)")


def markdown_table_after(text: str, anchor: str) -> tuple[list[str], list[list[str]]]:
    """Header and body rows of the first pipe table after the line containing ``anchor``."""
    start = text.find(anchor)
    assert start >= 0, f"anchor {anchor!r} not in spec"
    block: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("|"):
            block.append([c.strip() for c in stripped[1:-1].split("|")])
        elif block:
            break
    assert len(block) >= 3, f"no markdown table after {anchor!r}"
    assert set("".join(block[1])) <= set("-: "), f"second line after {anchor!r} is not a separator"
    return block[0], block[2:]


def labelled_rows(header: list[str], body: list[list[str]], n_labels: int) -> dict[tuple[str, ...], list[str]]:
    """Map (section?, label cells...) -> full row, filling down blank leading label cells.

    A row whose only non-empty cell is an italic first cell (``*Baseline*``) starts a section.
    """
    rows: dict[tuple[str, ...], list[str]] = {}
    section: str | None = None
    last = [""] * n_labels
    for cells in body:
        cells = cells + [""] * (len(header) - len(cells))
        first = cells[0]
        if re.fullmatch(r"\*[^*].*\*", first) and not any(cells[1:]):
            section, last = first.strip("*"), [""] * n_labels
            continue
        labels = list(cells[:n_labels])
        i = 0
        while i < n_labels and labels[i] == "":
            labels[i] = last[i]
            i += 1
        last = labels
        key = ((section,) if section else ()) + tuple(labels)
        assert key not in rows, f"duplicate row label {key}"
        rows[key] = cells
    return rows


def clean(cell: str) -> tuple[str, str | None]:
    """Strip emphasis: returns (text, mark)."""
    mark = None
    if "<u>" in cell:
        mark, cell = "underline", re.sub(r"</?u>", "", cell)
    if cell.startswith("**") and cell.endswith("**"):
        mark, cell = "bold", cell[2:-2]
    return cell.strip(), mark


def column_index(header: list[str], spec_col: str | int) -> int:
    if isinstance(spec_col, int):
        return spec_col
    assert header.count(spec_col) == 1, f"header {spec_col!r} not unique in {header}"
    return header.index(spec_col)


def spec_cells(table) -> dict[tuple[str, str], tuple[tuple[str, ...], int, str]]:
    """For every layout cell, the spec row key, column index and printed spec text."""
    text = (SPEC_DIR / table.spec["file"]).read_text(encoding="utf-8")
    out = {}
    parsed = {}
    for row in table.rows:
        anchor = row.extra.get("anchor", table.spec["anchor"])
        if anchor not in parsed:
            header, body = markdown_table_after(text, anchor)
            parsed[anchor] = (header, labelled_rows(header, body, table.spec["label_columns"]))
        header, rows = parsed[anchor]
        for col in table.columns:
            rep = table.reported(row.key, col.key)
            loc = (rep.spec if rep is not None and rep.spec else None) or {"row": row.spec, "col": col.spec}
            key = tuple(loc["row"])
            assert key in rows, f"{table.id}: spec has no row {key}"
            idx = column_index(header, loc["col"])
            out[(row.key, col.key)] = (key, idx, rows[key][idx], anchor)
    return out, parsed


@pytest.mark.usefixtures("needs_specs")
@pytest.mark.parametrize("table_id", table_ids())
def test_reported_cells_match_spec(table_id: str) -> None:
    """Each reported value equals the spec's printed number (string, value, std, mark)."""
    table = next(t for t in load_all() if t.id == table_id)
    located, _ = spec_cells(table)
    checked = 0
    for (row, col), (_, _, raw, _) in located.items():
        rep = table.reported(row, col)
        text, mark = clean(raw)
        if rep is None:
            assert not NUMBER.match(text), f"{table_id} [{row}][{col}]: spec prints {text!r} but the table file has no value"
            continue
        assert NUMBER.match(text), f"{table_id} [{row}][{col}]: spec cell {raw!r} is not a number"
        value, _, std = text.partition("±")
        assert rep.printed == value.strip(), f"{table_id} [{row}][{col}]: printed {rep.printed!r} != spec {value.strip()!r}"
        assert rep.value == float(value)
        assert rep.decimals == len(value.strip().partition(".")[2])
        assert (rep.std_printed or "") == std.strip(), f"{table_id} [{row}][{col}]: std {rep.std_printed!r} != spec {std.strip()!r}"
        assert rep.mark == mark, f"{table_id} [{row}][{col}]: mark {rep.mark!r} != spec {mark!r}"
        checked += 1
    assert checked == sum(len(v) for v in table.cells.values())


@pytest.mark.usefixtures("needs_specs")
@pytest.mark.parametrize("table_id", table_ids())
def test_every_spec_number_is_in_the_table_file(table_id: str) -> None:
    """No number of the spec table is left out of the layout (completeness, the other direction)."""
    table = next(t for t in load_all() if t.id == table_id)
    located, parsed = spec_cells(table)
    covered = {(anchor, key, idx) for (key, idx, _, anchor) in located.values()}
    n_labels = table.spec["label_columns"]
    for anchor, (header, rows) in parsed.items():
        for key, cells in rows.items():
            for idx in range(n_labels, len(header)):
                text, _ = clean(cells[idx])
                if NUMBER.match(text):
                    assert (anchor, key, idx) in covered, \
                        f"{table_id}: spec number {text!r} at row {key} column {header[idx]!r} is not in the table file"


def test_expected_tables_present() -> None:
    """Every results table of chapters 3-6 and of the two papers has a file."""
    ids = set(table_ids())
    expected = {f"thesis-{c}.{i}" for c, n in ((3, 6), (4, 7), (5, 5), (6, 5)) for i in range(1, n + 1)} - {"thesis-3.4"}
    expected |= {f"meddiff-ft-{i}" for i in range(1, 5)} | {"diffboost-1", "diffboost-2"}
    assert expected <= ids, f"missing: {sorted(expected - ids)}"


def test_layouts_are_consistent() -> None:
    """Cells reference layout keys, claims reference existing cells, values equal their printed strings."""
    for table in load_all():
        assert table.path is not None and table.path.stem == table.id
        keys = {(r.key, c.key) for r in table.rows for c in table.columns}
        for claim in table.claims:
            cells = [tuple(c) for pair in claim.get("pairs", []) for c in pair] + ([tuple(claim["cell"])] if "cell" in claim else [])
            assert cells, f"{table.id} claim {claim['id']} names no cells"
            for cell in cells:
                assert cell in keys, f"{table.id} claim {claim['id']}: {cell} is not a cell of the layout"
        for row in table.rows:
            for col in table.columns:
                q = table.cell_query(row.key, col.key, "paper")
                assert q is not None, f"{table.id} [{row.key}][{col.key}] has no paper-profile query"
