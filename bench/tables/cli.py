"""``bench table``: render a paper table with reported and reproduced values side by side.

Mounted by ``bench/cli.py`` as ``app.command("table")(table_command)``. Only light
modules are imported at start-up; records are read when the command runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXIT_USAGE = 2

EPILOG = """Examples:\n
  bench table --list\n
  bench table thesis-4.5 --profile mini\n
  bench table thesis-4.5 --profile mini --with mymethod\n
  bench table meddiff-ft-1 --profile paper --format latex --output table.tex\n
  bench table thesis-5.3 --records bench-runs/records --format csv
"""


def table_command(
    table_id: Optional[str] = typer.Argument(None, help="Table id, e.g. thesis-4.5 (see --list)."),
    list_: bool = typer.Option(False, "--list", help="List the paper tables and exit."),
    profile: str = typer.Option("mini", help="Profile of the reproduced runs: mini | paper | smoke."),
    fmt: str = typer.Option("md", "--format", "-f", help="md | csv | latex | html."),
    records: list[Path] = typer.Option([], "--records", "-r",
                                       help="Folder of result records (repeatable). Default: bench-runs/records and results/leaderboard."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    paper_dir: Optional[Path] = typer.Option(None, "--paper-dir", help="Folder of the paper table files (default: results/paper)."),
    with_: list[str] = typer.Option([], "--with", "-w", help="Add a contributed method as a column (METHOD[,METHOD]; "
                                    "repeatable), filled from its records of the paper cells' protocols."),
) -> None:
    """Render a paper table: reported | reproduced ± std (n seeds) | Δ, with the derived claims under it."""
    from bench.tables.dynamic_range import with_footer
    from bench.tables.paper import PROFILES, TableError, load_all, load_table
    from bench.tables.render import FORMATS, render
    from bench.tables.reproduce import default_record_dirs, load_records, reproduce_table

    if list_:
        try:
            tables = load_all(paper_dir)
        except TableError as exc:
            _fail(str(exc))
        from bench import terminal

        rows = [(t.id, f"{sum(len(v) for v in t.cells.values())} cells. {t.title}: {t.caption}") for t in tables]
        typer.echo("\n".join(terminal.described(rows, indent=0)))
        return
    if not table_id:
        _fail("give a table id (bench table --list shows them)")
    if profile not in PROFILES:
        _fail(f"--profile '{profile}' is not valid; use one of {', '.join(PROFILES)}")
    if fmt not in FORMATS:
        _fail(f"--format '{fmt}' is not valid; use one of {', '.join(FORMATS)}")
    try:
        table = load_table(table_id, paper_dir)
    except TableError as exc:
        _fail(str(exc))
    folders = list(records) or default_record_dirs()
    all_records = load_records(folders)
    result = reproduce_table(table, profile, all_records)
    methods = list(dict.fromkeys(m.strip() for item in with_ for m in item.split(",") if m.strip()))
    if methods:
        result = _with_methods(result, methods, all_records, folders, profile)
    text = with_footer(render(result, fmt), result, all_records, fmt)  # each task's dynamic range (controls)
    if output:
        from bench.store import atomic_write_text

        atomic_write_text(output, text)
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=False)


def _with_methods(result, methods, records, folders, profile):  # noqa: ANN001, ANN202
    """The table with the contributed methods' entries (one error line when --with cannot apply to it; a note
    on stderr for a method none of whose records fills a cell)."""
    from bench.tables.contributed import WithError, is_contributed, with_methods

    try:
        extended = with_methods(result, methods, records)
    except WithError as exc:
        _fail(str(exc))
    t = extended.table
    for method in methods:
        keys = {a.key for a in (*t.columns, *t.rows) if is_contributed(a) and a.query.get("method") == method}
        if not any(c.status == "ok" for (row, col), c in extended.cells.items() if row in keys or col in keys):
            typer.echo(f"note: no record of {method} in {', '.join(map(str, folders))} matches a cell of {t.id} in "
                       f"the {profile} profile (bench results shows its records)", err=True)
    return extended


table_command.__doc__ = (table_command.__doc__ or "") + "\n\n" + EPILOG


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)
