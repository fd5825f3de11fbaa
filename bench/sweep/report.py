"""What a sweep prints: one line per run as its state changes, a summary table at the end, the failures with their
``error:`` line (as HELM lists them), and the commands that render the tables the sweep fills."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from bench.sweep.plan import SweepRun, duration

STYLES = {"queued": "dim", "running": "cyan", "cached": "blue", "done": "green", "failed": "bold red",
          "skipped": "yellow", "stopped": "yellow"}


class Reporter:
    """Progress lines through rich (colours on a terminal, plain lines otherwise)."""

    def __init__(self, runs: list[SweepRun], out: TextIO | None = None) -> None:
        from rich.console import Console

        self.out = out or sys.stdout
        self.console = Console(file=self.out, soft_wrap=True, highlight=False)
        self.tty = self.console.is_terminal
        self.width = max((len(r.name) for r in runs), default=10)

    def state(self, run: SweepRun, detail: str = "") -> None:
        from rich.text import Text

        elapsed = f"  {duration(run.elapsed)}" if run.elapsed is not None and run.state in ("done", "failed") else ""
        line = Text(time.strftime("%H:%M:%S  "))
        line.append(f"{run.state:<8}", style=STYLES.get(run.state, ""))
        line.append(f"  {run.name.ljust(self.width)}  {run.spec.describe()}{elapsed}")
        if detail:
            line.append(f"  {detail}", style="red" if run.state == "failed" else "dim")
        self.console.print(line)

    def message(self, text: str) -> None:
        self.console.print(text, markup=False)

    def summary(self, runs: list[SweepRun]) -> None:
        headers = ["run", "task", "method", "seed", "state", "elapsed", "run id"]
        rows = [[r.name, r.spec.task, r.spec.method, str(r.spec.seed), r.state,
                 duration(r.elapsed) if r.elapsed is not None else "-", r.run_id or "-"] for r in runs]
        counts = {s: sum(r.state == s for r in runs) for s in ("done", "cached", "failed", "skipped")}
        counts.update({s: n for s in ("stopped", "queued") if (n := sum(r.state == s for r in runs))})
        if self.tty:
            from rich.table import Table

            table = Table(title="sweep summary", title_justify="left")
            for h in headers:
                table.add_column(h)
            for row in rows:
                table.add_row(*row, style=STYLES.get(row[4], ""))
            self.console.print(table)
        else:
            from bench import terminal

            self.message("\n".join(["", "summary:", *terminal.table(headers, rows, keys=1)]))
        self.message(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(runs)} runs")


def failures_text(runs: list[SweepRun]) -> str:
    failed = [r for r in runs if r.state == "failed"]
    skipped = [r for r in runs if r.state == "skipped"]
    lines = []
    if failed:
        lines.append(f"{len(failed)} run(s) failed:")
        for r in failed:
            lines.append(f"  {r.name} ({r.spec.describe()}): {r.reason}")
            if r.log is not None:
                lines.append(f"    log: {r.log}")
    if skipped:
        lines.append(f"{len(skipped)} run(s) skipped:")
        lines += [f"  {r.name} ({r.spec.describe()}): {r.reason}" for r in skipped]
    stopped = [r for r in runs if r.state == "stopped"]
    if stopped:
        lines.append(f"{len(stopped)} run(s) stopped: {', '.join(r.name for r in stopped)}")
    return "\n".join(lines)


def write_status(path: Path, sweep_name: str, runs: list[SweepRun], extra: dict[str, Any]) -> None:
    """``<work-dir>/sweeps/<name>/status.json``: every run's state, run id, elapsed time, reason and log."""
    from bench.store import atomic_write_text

    data = {"sweep": sweep_name, **extra, "runs": [
        {"name": r.name, "task": r.spec.task, "method": r.spec.method, "seed": r.spec.seed, "state": r.state,
         "run_id": r.run_id, "elapsed_s": None if r.elapsed is None else round(r.elapsed, 1), "reason": r.reason,
         "log": None if r.log is None else str(r.log), "after": r.spec.deps} for r in runs]}
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
