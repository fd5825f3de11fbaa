"""Where the project's own folders are: in a source checkout, or installed beside the package.

A source checkout holds ``datasets/`` (data cards), ``results/paper`` (paper tables) and
``results/leaderboard`` next to ``bench/``. A wheel installs them as data (the leaderboard as its shipped records)
under ``<prefix>/share/medsynth-bench/`` (pyproject's ``[tool.setuptools.data-files]``);
writable ones (the leaderboard, the site) then live under the current directory.
"""
from __future__ import annotations

import sys
import sysconfig
from functools import lru_cache
from pathlib import Path

SHARE = Path("share") / "medsynth-bench"


@lru_cache(maxsize=1)
def source_root() -> Path | None:
    """The checkout holding this package (the folder with ``pyproject.toml``), or None when installed."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "bench").is_dir() else None


def project_dir() -> Path:
    """The checkout when running from one, else the current directory (where writable folders go)."""
    return source_root() or Path.cwd()


def installed_data(*parts: str) -> Path | None:
    """``<prefix>/share/medsynth-bench/<parts>`` of the first installation prefix that has it."""
    for prefix in (sysconfig.get_path("data"), sys.prefix):
        candidate = Path(prefix).joinpath(SHARE, *parts)
        if candidate.exists():
            return candidate
    return None


def leaderboard_dirs() -> list[Path]:
    """The folders of accepted records: the checkout's ``results/leaderboard``; when installed, the current
    directory's (where ``bench submit`` writes) and the shipped copy under ``share/medsynth-bench``."""
    root = source_root()
    if root is not None:
        return [root / "results" / "leaderboard"]
    shipped = installed_data("results", "leaderboard")
    return [Path.cwd() / "results" / "leaderboard", *([shipped] if shipped is not None else [])]


def read_only_dir(*parts: str) -> Path:
    """A shipped, read-only project folder: from the checkout if there, else the installed copy."""
    root = source_root()
    if root is not None and root.joinpath(*parts).exists():
        return root.joinpath(*parts)
    return installed_data(*parts) or project_dir().joinpath(*parts)
