"""``bench analyze``: post-hoc analyses of finished runs (mounted by bench/cli.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

analyze_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Analyses of finished runs.")


@analyze_app.callback()
def main() -> None:
    """Analyses of finished runs (thesis chapter 5 bias analysis)."""


@analyze_app.command(epilog="""Examples:\n
  bench analyze bias --run lowcontrast__real-only__derm-mini__mini__s0__1a2b3c4d\n
  bench analyze bias --run seg-aug__real-only__derm-mini__mini__s0__5e6f7a8b --work-dir runs\n
  bench analyze bias --run RUN_ID --data-root ~/data --threshold 0.8 --threshold 0.6 --threshold 0.4\n
  bench analyze bias --run RUN_ID --skin-tone-run skin-tone__ensemble-lr__derm-mini__mini__s0__9c8d7e6f""")
def bias(
    run: str = typer.Option(..., "--run", help="Run id of a finished segmentation run (or the record's path)."),
    work_dir: Path = typer.Option(Path("bench-runs"), "--work-dir", envvar="BENCH_WORK_DIR", help="Work dir of the run."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding the real datasets."),
    arm: Optional[str] = typer.Option(None, "--arm", help="Per-sample arm to analyse (default: real-only)."),
    threshold: list[float] = typer.Option([0.8, 0.6], "--threshold", help="x of each poorly segmented subset S_x = {IoU < x}."),
    skin_tone_run: Optional[str] = typer.Option(None, "--skin-tone-run", help="A finished skin-tone run (same work dir) "
                                                "whose annotator labels the skin-tone groups (default: ITA thresholds)."),
) -> None:
    """Thesis chapter 5 bias analysis: attributes of S_x vs the full test set (plots, KS / Mann-Whitney / chi-square)."""
    from bench.analysis.report import AnalysisError, analyze_bias, find_record

    try:
        report = analyze_bias(find_record(run, work_dir), data_root=data_root, arm=arm, thresholds=tuple(threshold),
                              skin_tone_run=skin_tone_run)
    except AnalysisError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for model, subsets in report.summary["models"].items():
        for name, s in subsets.items():
            p = s["ks_p"]
            typer.echo(f"{model} {name}: n={s['n']}  median ITA difference {_fmt(s['ita_difference_median'])} "
                       f"vs {_fmt(s['ita_difference_median_other'])} outside, KS p={'-' if p is None else f'{p:.3g}'}")
    for model, path in report.plots.items():
        typer.echo(f"plot ({model}): {path}")
    typer.echo(f"statistics: {report.stats_path}")


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1f}"
