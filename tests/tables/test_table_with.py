"""`bench table ID --with METHOD`: a contributed method as an extra column (or row) of a paper table, filled only
from its records of the protocol of the paper cells beside it; the leaderboard's paper-table page does the same."""
from __future__ import annotations

import copy

import pytest

from bench.leaderboard.submit import default_leaderboard_dir
from bench.tables.contributed import WithError, contributed_methods, with_methods
from bench.tables.paper import for_profile, load_table
from bench.tables.render import render
from bench.tables.reproduce import load_records, reproduce_table

SHIPPED = load_records([default_leaderboard_dir()])


def _with_contribution() -> tuple[list[dict], dict]:
    """The shipped records plus a contributed S_1k record of the protocol Table 4.5's S_1k cells read: a shipped
    S_1k ControlNet record relabelled `contrib` (the subject here is the column, not the method)."""
    table = load_table("thesis-4.5")
    row = next(r for r in table.rows if "s1k" in r.key)
    protocol = reproduce_table(table, "mini", SHIPPED).cell(row.key, table.columns[0].key).protocol
    source = next(r for r in SHIPPED if r["task"]["id"] == "seg-aug" and r["method"]["id"] == "controlnet"
                  and r["protocol_hash"] == protocol)
    contrib = copy.deepcopy(source)
    contrib["method"] = {**contrib["method"], "id": "contrib"}
    contrib["run_id"] = contrib["run_id"].replace("__controlnet__", "__contrib__")
    return [*SHIPPED, contrib], contrib


def test_a_contributed_column_beside_the_paper_methods_of_its_protocol() -> None:
    table = load_table("thesis-4.5")
    records, record = _with_contribution()
    result = with_methods(reproduce_table(table, "mini", records), ["contrib"], records)
    assert result.table.columns[-1].key == "with:contrib" and len(result.table.columns) == len(table.columns) + 1
    s1k = [r for r in table.rows if "s1k" in r.key]
    for row in table.rows:
        cell = result.cell(row.key, "with:contrib")
        if row in s1k:  # the contributed run is the S_1k twin (n_real 200), as the S_1k cells beside it
            assert cell.status == "ok" and cell.protocol == record["protocol_hash"] == result.cell(row.key, table.columns[0].key).protocol
            model = for_profile(row.query["model"], "mini")  # XBound-Former's id is per profile
            assert cell.mean == pytest.approx(record["per_model"][model][row.query["metric"]])
        else:
            assert cell.status == "no-run"
    text = render(result, "md")
    head = next(line for line in text.splitlines() if line.startswith("| Row"))
    assert head.endswith("| DiDGen Δ | contrib (contributed) |")
    assert f"contrib (contributed): {len(s1k)} of {len(table.rows)} cells from its records of protocol " \
           f"{record['protocol_hash'][:8]}, the paper cells' beside them." in text
    reproduced = sum(result.cell(r.key, c.key).status == "ok" for r in table.rows for c in table.columns)
    assert f"{reproduced} of 96 cells reproduced" in text  # the header counts the paper's cells only
    for fmt in ("latex", "html", "csv"):
        assert "contrib" in render(result, fmt)


def test_a_record_of_another_protocol_never_fills_a_contributed_cell() -> None:
    records, contrib = _with_contribution()
    other = dict(contrib, protocol_hash="f" * 64, run_id=contrib["run_id"][:-8] + "ffffffff")
    records = [r for r in records if r is not contrib] + [other]
    table = load_table("thesis-4.5")
    result = with_methods(reproduce_table(table, "mini", records), ["contrib"], records)
    cells = [result.cell(r.key, "with:contrib") for r in table.rows if "s1k" in r.key]
    assert all(c.status == "no-run" for c in cells)
    assert cells[0].note == f"records of ffffffff only, not of the paper cells' protocol {contrib['protocol_hash'][:8]}"


def test_methods_in_rows_get_a_row_per_model_and_bad_uses_are_one_error() -> None:
    table = load_table("thesis-4.3")  # rows are classifier x method
    result = with_methods(reproduce_table(table, "mini", SHIPPED), ["ip-adapter"], SHIPPED)
    added = [r for r in result.table.rows if r.key.startswith("with:")]
    models = {r.query["model"] for r in table.rows}
    assert len(added) == len(models) and {r.query["model"] for r in added} == models
    assert all(r.label.startswith("ip-adapter · ") for r in added)
    assert any(result.cell(added[0].key, c.key).status == "ok" for c in table.columns)
    with pytest.raises(WithError, match="thesis-4.7 compares settings of one method"):
        with_methods(reproduce_table(load_table("thesis-4.7"), "mini", SHIPPED), ["ip-adapter"], SHIPPED)
    with pytest.raises(WithError, match="didgen is already a column of thesis-4.5"):
        with_methods(reproduce_table(load_table("thesis-4.5"), "mini", SHIPPED), ["didgen"], SHIPPED)


def test_the_leaderboard_page_adds_accepted_entries_of_the_same_protocol() -> None:
    records, _ = _with_contribution()
    result = reproduce_table(load_table("thesis-4.5"), "mini", records)
    assert "contrib" in contributed_methods(result, records)
    from bench.leaderboard.site import _tables_page

    page = _tables_page(records, None)
    section = page[page.index('id="thesis-4.5"'):page.index("</section>", page.index('id="thesis-4.5"'))]
    assert '<th colspan="1">contrib</th>' in section and 'class="ok contributed"' in section
