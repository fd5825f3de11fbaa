"""bench/tables/cli.py: ``bench table`` mounted on a typer app as bench/cli.py does."""
from __future__ import annotations

import typer
from typer.testing import CliRunner

from bench.tables.cli import table_command
from bench.tables.paper import table_ids

app = typer.Typer()
app.command("table")(table_command)


@app.command("other")
def _other() -> None:  # a second command keeps typer in multi-command mode, as in bench/cli.py
    pass


runner = CliRunner()


def test_list_shows_every_table() -> None:
    result = runner.invoke(app, ["table", "--list"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.splitlines() if not line.startswith(" ")]  # wrapped
    assert listed == table_ids() and len(listed) >= 28


def test_render_from_records_folder(tmp_path, record_factory, write_record_dir) -> None:
    folder = write_record_dir(tmp_path / "records", [record_factory(per_model={"unet": {"iou": 0.7, "dice": 0.8}})])
    result = runner.invoke(app, ["table", "thesis-4.5", "--records", str(folder)])
    assert result.exit_code == 0, result.output
    assert "| IoU ↑ · S_1k · U-Net | 0.716 | 0.700 (n=1) | -0.016 |" in result.output
    out = tmp_path / "t.csv"
    result = runner.invoke(app, ["table", "thesis-4.5", "--records", str(folder), "--format", "csv", "--output", str(out)])
    assert result.exit_code == 0 and out.read_text().startswith("table,profile,row")


def test_usage_errors_are_one_line() -> None:
    for args, expected in ((["table", "thesis-9.9"], "Unknown table 'thesis-9.9'"),
                           (["table", "thesis-4.5", "--format", "docx"], "--format 'docx' is not valid"),
                           (["table", "thesis-4.5", "--profile", "huge"], "--profile 'huge' is not valid"),
                           (["table"], "give a table id")):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and expected in result.output, (args, result.output)
