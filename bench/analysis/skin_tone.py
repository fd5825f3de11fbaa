"""Skin-tone groups of the bias analysis from a fitted annotator (thesis 5.2: the Fitzpatrick17k-trained ensemble).

`bench analyze bias --skin-tone-run RUN` loads the annotator that a finished ``skin-tone`` run fitted (its method
class, resolved config and fit state, all named by the record) and labels every test image of the analysed run with
it, replacing the default ITA-threshold groups. Nothing is refitted.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.analysis.records import AnalysisError, find_record


def load_annotator(run: str, work_dir: Path) -> tuple[Any, str]:
    """The fitted annotator of a ``skin-tone`` run (run id or record path) and that run's id."""
    from bench import config as cfg
    from bench.registry import METHODS
    from bench.store import RecordError, read_record

    try:
        record = read_record(find_record(run, work_dir))
    except RecordError as exc:
        raise AnalysisError(str(exc)) from None
    if record["task"]["id"] != "skin-tone":
        raise AnalysisError(f"--skin-tone-run {record['run_id']} is a {record['task']['id']} run, not a skin-tone run")
    method_cls = METHODS.get(record["method"]["id"])
    state = Path(work_dir) / record["stages"]["fit"] / "state"
    if not state.is_dir():
        raise AnalysisError(f"the fit state of {record['run_id']} is missing ({state}); rerun it with bench run")
    annotator = method_cls(cfg.build(method_cls.Config, record["config"]["method"], "method"))
    annotator.load(state)
    return annotator, record["run_id"]


def annotate(samples: Sequence[Any], annotator: Any) -> list[str]:
    """Skin-tone group name (``I-II`` / ``III-IV`` / ``V-VI``) of every sample's image."""
    from bench.data.skintone import SKIN_GROUPS
    from bench.interface import Condition, RunContext

    conditions = [Condition(reference=s.image, meta={"index": i}) for i, s in enumerate(samples)]
    with torch.no_grad():
        return [SKIN_GROUPS[int(out.label)] for out in annotator.generate(conditions, RunContext())]
