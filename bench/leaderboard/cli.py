"""``bench leaderboard build`` and ``bench submit``.

Mounted by ``bench/cli.py``: ``app.add_typer(leaderboard_app, name="leaderboard")`` and
``app.command("submit")(submit_command)``. Heavy modules are imported inside the commands.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXIT_USAGE = 2
EXIT_REFUSED = 1

leaderboard_app = typer.Typer(add_completion=False, no_args_is_help=True,
                              help="Build the static leaderboard site from accepted records.")


@leaderboard_app.callback()
def _leaderboard() -> None:
    """Build the static leaderboard site from accepted records."""


@leaderboard_app.command("build", epilog="""Examples:\n
  bench leaderboard build\n
  bench leaderboard build --records results/leaderboard --records bench-runs/records --out /tmp/site\n
Then open results/site/index.html in a browser (no server needed).""")
def build(
    records: list[Path] = typer.Option([], "--records", "-r", help="Folder of records (repeatable). Default: results/leaderboard."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: results/site; replaced on every build)."),
    paper_dir: Optional[Path] = typer.Option(None, "--paper-dir", help="Folder of the paper tables (default: results/paper)."),
) -> None:
    """Write the static site: a front page with the task list, one sortable page per task, the paper tables."""
    from bench.leaderboard.site import SiteError, build_site
    from bench.leaderboard.submit import default_leaderboard_dir

    try:
        summary = build_site(list(records) or [default_leaderboard_dir()], out, paper_dir)
    except SiteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(f"built {len(summary.pages)} page(s) from {summary.n_records} record(s), {summary.n_images} image(s): "
               f"{summary.out / 'index.html'}")


def submit_command(
    records: list[Path] = typer.Argument(..., help="Record files (JSON) written by bench run."),
    leaderboard: Optional[Path] = typer.Option(None, "--leaderboard", help="Leaderboard folder (default: results/leaderboard)."),
    allow_smoke: bool = typer.Option(False, "--allow-smoke", help="Also accept smoke-profile records (for testing the pipeline)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check only; copy nothing."),
) -> None:
    """Validate records and copy the accepted ones into results/leaderboard/ (one line per file).

    Checks: JSON object, schema, plain run id, known task, known metrics within range,
    protocol hash recomputed from the current task definition and split checksums,
    no duplicates, and the record's agreement with itself: run id, profile (configs =
    the profile's defaults + the recorded overrides), headline, per-model values and
    comparisons recomputed from its per-sample scores on the protocol's test split.
    Nothing in a submission is executed or unpickled. Exit status 1 if any file is refused.

    Examples:\n
      bench submit bench-runs/records/seg-aug__didgen__derm-mini__mini__s0__1a2b3c4d.json\n
      bench submit --dry-run bench-runs/records/*.json
    """
    from bench.leaderboard.submit import RANKED_PROFILES, submit

    profiles = RANKED_PROFILES + (("smoke",) if allow_smoke else ())
    verdicts = submit(records, leaderboard, allow_profiles=profiles, dry_run=dry_run)
    for verdict in verdicts:
        typer.echo(verdict.line(), err=not verdict.accepted)
    n_ok = sum(v.accepted for v in verdicts)
    typer.echo(f"{n_ok} {'would be accepted (dry run: nothing stored)' if dry_run else 'accepted'}, "
               f"{len(verdicts) - n_ok} refused")
    if n_ok != len(verdicts):
        raise typer.Exit(EXIT_REFUSED)
