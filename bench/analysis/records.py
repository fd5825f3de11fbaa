"""What every analysis of a finished run shares: finding its record, and the one-line error it raises."""
from __future__ import annotations

from pathlib import Path


class AnalysisError(ValueError):
    """The record cannot be analysed (one line naming what is missing)."""


def find_record(run_id: str, work_dir: Path) -> Path:
    """``<work_dir>/records/<run_id>.json`` (or a path given directly)."""
    direct = Path(run_id)
    if direct.suffix == ".json" and direct.is_file():
        return direct
    path = Path(work_dir) / "records" / f"{run_id}.json"
    if not path.is_file():
        raise AnalysisError(f"no record '{run_id}' in {Path(work_dir) / 'records'} (pass --work-dir DIR)")
    return path
