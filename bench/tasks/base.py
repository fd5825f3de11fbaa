"""The task contract: what a task declares, loads, asks a generator for, and evaluates.

A task is a class with a frozen ``Config`` dataclass (filled from
``bench/tasks/configs/<task-id>.yaml`` per profile), a protocol ``version``
bumped whenever evaluation changes, and four hooks the runner calls in order:
`load` -> `fit_set` -> `conditions` -> `evaluate`. The constructor is light;
`load` does the heavy lifting (HELM's scenario rule).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.interface import FIT_NEED_NAMES, Capabilities, Condition, RunContext, Sample

CONFIG_DIR = Path(__file__).parent / "configs"


class IncompatibleMethodError(ValueError):
    """The method's capabilities do not fit the task (one line naming what is missing)."""


@dataclass
class TaskData:
    """The splits a task works on, with the checksums that enter the protocol hash."""

    dataset_id: str
    splits: dict[str, Sequence[Sample]]
    checksums: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


@dataclass
class Evaluation:
    """What `Task.evaluate` returns; the runner turns it into the record.

    Attributes:
        metrics: headline metric -> value (mean over downstream models).
        higher_is_better: metric -> direction, for every key of ``metrics``.
        per_model: downstream model -> metric -> value.
        comparisons: statistics against the task's reference arm.
        per_sample: rows of per-sample scores (dicts), written to a CSV beside the record.
        counts: named counts (real training samples, generated samples, test samples ...).
        artifacts: name -> path of files kept by the evaluation (plots, sample grids).
    """

    metrics: dict[str, float]
    higher_is_better: dict[str, bool]
    per_model: dict[str, dict[str, float]] = field(default_factory=dict)
    comparisons: dict[str, Any] = field(default_factory=dict)
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleScores:
    """How a task's headline metrics follow from its per-sample scores, so ``bench submit`` can recompute them.

    Each of ``columns`` is a per-sample score; its mean over the ``arm`` rows of one model is that model's
    ``per_model`` value, and the mean over models is the headline metric. The ``reference_arm`` rows give the
    comparison (relative gain over models, paired t-test pooled over models). ``split``: the value of the CSV's
    ``split`` column the headline reads (None when the CSV has no such column).

    ``not_recomputed``: the other headline metric keys (a trailing ``*`` matches any rest), which the file cannot
    give back (Frechet distances, diversity over pairs, scores on sets the file lacks, confusion-matrix metrics).
    ``bench submit`` refuses a metric that is in neither list, so a new metric is never silently unchecked.
    ``has_file``: the task writes a per-sample file (a record without one is refused).
    ``confusion``: ``(truth column, prediction column)`` when the rows hold class predictions; every confusion-matrix
    metric (``bench.metrics.classification.classification_scores``) then recomputes from them, per model where the
    rows have ``model``/``arm`` columns, for the whole file otherwise.
    ``metric_rows``: metric keys (patterns as above) whose value is the mean of the ``value`` column over the rows
    whose ``metric`` column is that key (scores over pairs: MS-SSIM, LPIPS diversity).
    ``fd_stats``: the artefact holding both sets' feature statistics (`bench.metrics.image.save_fd_stats`): every
    ``fd[...]`` metric recomputes from it.
    ``split_metrics``: ``<column>[<split>]`` metrics (a transfer set's ``dice[ph2]``) recompute from the rows whose
    ``split`` column is ``<split>``, as ``<column>`` does from the ``split`` rows.
    ``optional_columns``: per-sample scores recomputed like ``columns`` when the record reports them as metrics
    (seg-aug's ``surface_metrics``: precision, recall, HD95, ASSD); records without them are checked as before. Empty
    cells (NaN: an HD95 with both masks empty) are left out of the means.
    ``gain_over_defined_models``: the relative gain averages the models whose reference value is non-zero and whose
    own value is finite, leaving the others out (lowcontrast: a pretrained segmenter can score 0); by default a
    reference value of 0 makes the gain undefined (None).
    Rows may carry a ``fold`` column (cross-validation, seg-aug's ``folds``); a model's value is then the mean of its
    per-fold means when the record's ``comparisons.folds.aggregate`` is ``mean-of-folds``, the mean over all rows
    otherwise.
    """

    columns: tuple[str, ...]
    arm: str = "augmented"
    reference_arm: str = "real-only"
    split: str | None = None
    not_recomputed: tuple[str, ...] = ()
    has_file: bool = True
    confusion: tuple[str, str] | None = None
    metric_rows: tuple[str, ...] = ()
    fd_stats: str | None = None
    split_metrics: bool = False
    optional_columns: tuple[str, ...] = ()
    gain_over_defined_models: bool = False


#: Metric families computed over a confusion matrix (``bench.metrics.classification``): not per-sample means.
CONFUSION_MATRIX_METRICS = ("accuracy*", "balanced_accuracy*", "f1*", "precision*", "recall*")


class Task:
    """Base class of tasks.

    Class attributes:
        id: registry id; version: protocol version; description: one line.
        needs: sample fields every generated sample must carry.
        main_metric: the metric leaderboards sort by.
        generator_inputs: config keys kept out of the protocol hash (what the generator is given).
    """

    id: ClassVar[str] = ""
    version: ClassVar[int] = 1
    description: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    main_metric: ClassVar[str] = ""
    # False when the task scores only what the method returns (skin-tone annotations): real-only cannot run it
    has_real_only_arm: ClassVar[bool] = True
    Config: ClassVar[type]
    generator_inputs: ClassVar[frozenset[str]] = frozenset()
    """Config keys that only choose what the generator is given (e.g. which masks condition it): they do not
    change what is measured, so they stay out of the protocol hash and records differing there rank together."""
    inputs_left_out_at: ClassVar[dict[str, Any]] = {}
    """Generator-input keys left out of the run id while they have this value (as the record's config states it:
    lists for tuples): keys added after records were shipped keep those records' run ids."""
    protocol_left_out_at: ClassVar[dict[str, Any]] = {}
    """Protocol keys left out of the protocol hash while they have this value (as a record's config states it):
    a key added after records were shipped, at the value that keeps the old behaviour, keeps their protocol hash."""
    sample_scores: ClassVar[SampleScores]
    """Which headline metrics recompute from the per-sample file and which cannot (every task declares it;
    ``bench submit`` refuses records of a task that does not)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def config_file(cls) -> Path:
        return CONFIG_DIR / f"{cls.id}.yaml"

    # -- what the task gives and needs -------------------------------------------------------
    def recorded_config(self, config: dict[str, Any], work_dir: Path) -> dict[str, Any]:
        """The task config as the record states it: values naming files on this machine become portable names
        (seg-aug's ``mask_source`` record path becomes the source run's id)."""
        return config

    def generation_identity(self) -> dict[str, Any] | None:
        """What determines the conditions handed to the generator, when that is less than the whole protocol
        (runs differing only in how the samples are scored then share one generation); None: the protocol."""
        return None

    def given(self) -> frozenset[str]:
        """Condition fields the task supplies to the generator."""
        return frozenset()

    def must_follow(self) -> frozenset[str]:
        """Given fields the generator must be able to follow (a subset of `given`)."""
        return frozenset()

    def fit_gives(self) -> frozenset[str]:
        """What every sample of `fit_set` carries, of `bench.interface.FIT_NEEDS`. Default: image-mask pairs (the
        dermoscopy and segmentation tasks); tasks without masks say so. Where it depends on the data (derm-cls on a
        dataset without masks) the method's fit finds out and raises `bench.errors.FitSetError`."""
        return frozenset({"mask"})

    def incompatibility(self, capabilities: Capabilities) -> str | None:
        """Why a generator with ``capabilities`` cannot run this task, or None."""
        problems = []
        missing_out = self.needs - capabilities.returns
        if missing_out:
            problems.append(f"needs a method returning {sorted(self.needs)}; it returns {sorted(capabilities.returns)}")
        missing_in = self.must_follow() - capabilities.accepts
        if missing_in:
            problems.append(f"conditions on {sorted(missing_in)}, which the method cannot follow "
                            f"(it accepts {sorted(capabilities.accepts) or 'nothing'})")
        unmet = capabilities.unmet(self.given())
        if unmet:
            problems.append(f"gives {sorted(self.given()) or 'no conditions'}, but {unmet}")
        unfit = capabilities.fit_needs - self.fit_gives()
        if unfit:
            problems.append(f"gives no {' or '.join(FIT_NEED_NAMES[n] for n in sorted(unfit))} to fit on, which the "
                            "method's training needs")
        return "; ".join(problems) or None

    def method_problem(self, capabilities: Capabilities, produces_samples: bool = True) -> str | None:
        """`incompatibility`, plus the case of a method that generates nothing on a task without a real-only arm."""
        if not produces_samples and not self.has_real_only_arm:
            return "scores only what the method returns, and this method returns nothing (it is a real-only arm)"
        return self.incompatibility(capabilities)

    def check_method(self, method_id: str, capabilities: Capabilities, produces_samples: bool = True) -> None:
        why = self.method_problem(capabilities, produces_samples)
        if why:
            raise IncompatibleMethodError(f"Task '{self.id}' cannot run method '{method_id}': task {why}")

    # -- hooks ---------------------------------------------------------------------------------------
    def load(self, ctx: RunContext) -> TaskData:
        raise NotImplementedError

    def adopt(self, data: TaskData) -> None:
        """Take over ``data`` that another instance of this task with the same protocol config loaded (``plan_run``
        shares loaded data between the runs of a sweep): set what ``load`` would have set on this instance and its
        keys read (skin-tone's fit identity). Default: nothing."""

    def fit_set(self, data: TaskData) -> Sequence[Sample]:
        """The samples the generator is fitted on."""
        return data.splits["train"]

    def conditions(self, data: TaskData, ctx: RunContext) -> list[Condition]:
        raise NotImplementedError

    def evaluate(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext, method_id: str) -> Evaluation:
        raise NotImplementedError

    def fit_identity(self) -> dict[str, Any]:
        """What determines the fit set (goes into the fit stage's cache key)."""
        return {}

    def describe_generator_inputs(self, method_id: str, method_config: Any) -> list[dict[str, str]]:
        """What the generator of this run is given, for a plan printed before any GPU hour is spent.

        Pure: reads only the resolved task config and ``method_config`` (the method's resolved config, a dataclass
        or a dict); loads no data. Rows of `GENERATOR_INPUT_KEYS` (input, resolution, source, prompt), string
        values; the base task describes nothing.
        """
        return []


#: Keys of the rows of `Task.describe_generator_inputs`.
GENERATOR_INPUT_KEYS = ("input", "resolution", "source", "prompt")


def format_generator_inputs(rows: Sequence[dict[str, str]], indent: str = "  ") -> list[str]:
    """One printable line per row of `Task.describe_generator_inputs`: ``input: resolution; source; prompt``."""
    lines = []
    for row in rows:
        parts = [row.get(k, "") for k in GENERATOR_INPUT_KEYS[1:] if row.get(k)]
        lines.append(f"{indent}{row.get('input', '?')}: {'; '.join(parts)}")
    return lines
