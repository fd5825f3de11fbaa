"""The generator interface every method, baseline and external plugin implements.

A generator *completes partial samples*: a task hands it `Condition`s (what is
given: a mask to follow, a class label, a prompt, a reference image ...) and it
returns `Sample`s with the missing fields filled in. What a generator can follow
and what it can produce is declared in `Capabilities`, so a task refuses an
incompatible method before any work starts.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import torch

logger = logging.getLogger(__name__)

#: Fields of a Sample (and of a Condition) that capabilities may name.
SAMPLE_FIELDS = ("image", "mask", "label", "labels", "report", "prompt")
#: What a method's fit can need in every training sample (`Capabilities.fit_needs`, `Task.fit_gives`).
FIT_NEEDS = ("mask", "concepts")
FIT_NEED_NAMES = {"mask": "image-mask pairs", "concepts": "customization set (images with concept placeholders and "
                  "class words)"}
#: Extra fields a Condition may carry: a reference image (style, identity, appearance) and an edge map to follow.
CONDITION_FIELDS = ("mask", "label", "labels", "report", "prompt", "reference", "edges")


@dataclass
class Sample:
    """One data item. Every field is optional.

    Attributes:
        image: float tensor (C, H, W) with values in [0, 1].
        mask: bool tensor (H, W); True is foreground (lesion, organ, object).
        label: class index into the dataset card's class order.
        labels: multi-hot float tensor (K,) (e.g. the 14 CheXpert observations).
        report: free-text report.
        prompt: text prompt (may hold placeholder tokens such as ``<lesion>``).
        meta: anything else; real datasets put their own id under ``meta["id"]``.
    """

    image: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    label: int | None = None
    labels: torch.Tensor | None = None
    report: str | None = None
    prompt: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> frozenset[str]:
        """Names of the fields that are present (meta excluded)."""
        return frozenset(f for f in SAMPLE_FIELDS if getattr(self, f) is not None)

    def nonfinite_fields(self) -> list[str]:
        """Tensor fields holding NaN or infinity (a diverged generator; stored as uint8 they would look valid)."""
        return [f for f in ("image", "labels") if getattr(self, f) is not None
                and not bool(torch.isfinite(getattr(self, f).float()).all())]


@dataclass
class Condition:
    """A partial sample: what the task gives the generator to follow.

    ``reference`` is a reference image (C, H, W) in [0, 1] (style, appearance or
    identity source); ``edges`` an edge map (C, H, W) in [0, 1] the image must follow (DiffBoost's Table I:
    an image reconstructed from its edges; ``meta["edge_detector"]`` names the extractor); the other fields mean
    what they mean in `Sample`.
    """

    mask: torch.Tensor | None = None
    label: int | None = None
    labels: torch.Tensor | None = None
    report: str | None = None
    prompt: str | None = None
    reference: torch.Tensor | None = None
    edges: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> frozenset[str]:
        return frozenset(f for f in CONDITION_FIELDS if getattr(self, f) is not None)


@dataclass(frozen=True)
class Capabilities:
    """What a generator can follow and what it produces.

    Attributes:
        accepts: condition fields the generator can follow (others are refused).
        returns: sample fields every generated sample carries.
        requires: condition fields that must be present (subset of ``accepts``);
            ControlNet requires a mask, an unconditional model requires nothing.
        requires_one_of: alternatives, each a set of fields; when given, the condition must hold every field
            of at least one (DiffBoost: a real image and its mask to re-render, or an edge map).
        fit_needs: what every training sample of the fit set must carry (`FIT_NEEDS`): ``mask`` (image-mask
            pairs), ``concepts`` (a customization set: concept placeholders and class words, as task concept
            gives). Checked against `Task.fit_gives` before anything runs; a need that depends on the method's
            settings (DiDGen's attention loss) is checked by the method's fit instead.
    """

    accepts: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    requires: frozenset[str] = frozenset()
    requires_one_of: tuple[frozenset[str], ...] = ()
    fit_needs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("accepts", "returns", "requires", "fit_needs"):
            value = getattr(self, name)
            if not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset(value))
        object.__setattr__(self, "requires_one_of", tuple(frozenset(a) for a in self.requires_one_of))
        alternatives = frozenset().union(*self.requires_one_of)
        unknown = (self.accepts | self.requires | alternatives) - set(CONDITION_FIELDS)
        unknown |= self.returns - set(SAMPLE_FIELDS)
        unknown |= self.fit_needs - set(FIT_NEEDS)
        if unknown:
            raise ValueError(f"Capabilities name unknown fields: {sorted(unknown)}")
        if not (self.requires | alternatives) <= self.accepts:
            raise ValueError(f"requires {sorted((self.requires | alternatives) - self.accepts)} not in accepts")

    def unmet(self, given: frozenset[str]) -> str | None:
        """What a task giving ``given`` leaves unmet (one phrase), or None."""
        missing = self.requires - given
        if missing:
            return f"the method requires {sorted(missing)}"
        if self.requires_one_of and not any(a <= given for a in self.requires_one_of):
            return "the method requires one of " + " or ".join(str(sorted(a)) for a in self.requires_one_of)
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: sorted(getattr(self, k)) for k in ("accepts", "returns", "requires")}
        if self.requires_one_of:
            out["requires_one_of"] = [sorted(a) for a in self.requires_one_of]
        if self.fit_needs:
            out["fit_needs"] = sorted(self.fit_needs)
        return out


@dataclass
class RunContext:
    """Everything a generator or task may use besides its config.

    Attributes:
        device: torch device to compute on.
        seed: the run seed; generators derive their own generators from it.
        profile: ``smoke``, ``mini`` or ``paper``.
        work_dir: folder the generator may write to (checkpoints, caches); nothing
            is written anywhere else.
        data_root: root folder of real datasets (``--data-root``), if any.
        precision: ``fp32``, ``fp16`` or ``bf16``.
        progress: ``progress(description, total)`` returns a callable ``advance(n=1)``;
            the runner supplies rich progress bars, tests a silent one.
        accelerator: an ``accelerate.Accelerator`` when running under accelerate. The runner splits the work
            itself (the main process fits and evaluates, each process generates its own shards), so methods and
            tasks must not call its collectives (``wait_for_everyone``, ``gather``): the others are not there.
        cache_dir: folder shared by all runs of one work dir (caches that outlive a stage,
            such as the real-only arm of a task or reference feature statistics).
        reused: caches made in another environment (CPU kernel set, thread count) that this run read: what ->
            that environment, or ``"unknown"``. Tasks add to it (``bench.store.note_reuse``); the record
            names it under ``environment.reused``, and ``bench verify`` then compares within tolerance.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    profile: str = "mini"
    work_dir: Path = field(default_factory=lambda: Path("bench-runs"))
    data_root: Path | None = None
    precision: str = "fp32"
    progress: Callable[[str, int | None], Callable[..., None]] = field(default=lambda desc, total=None: _noop)
    accelerator: Any = None
    cache_dir: Path | None = None
    reused: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or bool(getattr(self.accelerator, "is_main_process", True))

    def torch_generator(self, *salt: int) -> torch.Generator:
        """A CPU generator seeded by (seed, *salt), independent of global RNG state."""
        return torch.Generator().manual_seed(derive_seed(self.seed, *salt))

    @property
    def dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]


def _noop(*_: Any, **__: Any) -> None:
    return None


def derive_seed(seed: int, *salt: int) -> int:
    """A 63-bit seed derived deterministically from ``seed`` and integer salts."""
    import hashlib

    data = ",".join(str(int(s)) for s in (seed, *salt)).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") >> 1


@runtime_checkable
class Generator(Protocol):
    """The protocol every method implements.

    Class attributes:
        capabilities: a `Capabilities` instance.
        Config: a (frozen) dataclass holding the method's hyperparameters; the
            profile section of the method's ``config.yaml`` fills it, ``--set``
            overrides it, and the resolved values go into the result record.
        version: bump when a change alters what the method produces; it is part
            of every cache key and of the record.

    Instances are constructed as ``Method(config)``.
    """

    capabilities: ClassVar[Capabilities]
    Config: ClassVar[type]
    version: ClassVar[str]

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        """Adapt the generator to ``train`` (may do nothing)."""

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        """Yield exactly one Sample per condition, in order."""

    def save(self, path: Path) -> None:
        """Write the fitted state to folder ``path`` (safetensors / JSON only)."""

    def load(self, path: Path) -> None:
        """Restore the fitted state written by `save`."""


class GeneratorBase:
    """Convenience base class: stores the config, no-op fit/save/load."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset()
    """Config fields that only steer generation: runs differing only in them share the fitted state."""
    fit_from: ClassVar[str | None] = None
    """Id of another method whose fitted state this one reuses (same fit key when the options outside
    ``generation_only`` are equal): a method that only samples differently from ``fit_from``."""

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else type(self).Config()

    @classmethod
    def capabilities_for(cls, config: Any) -> Capabilities:
        """The capabilities with ``config`` (override when an option changes them; default: `capabilities`)."""
        return cls.capabilities

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        return None

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        return None

    def load(self, path: Path) -> None:
        return None


def capabilities_of(cls: type, config: Any) -> Capabilities:
    """What generator class ``cls`` can follow and produce with ``config``: ``cls.capabilities_for(config)`` when
    the class defines it (capabilities that depend on an option, e.g. ip-adapter's ``mask_input``), else the class
    attribute ``capabilities``."""
    hook = getattr(cls, "capabilities_for", None)
    return hook(config) if callable(hook) else cls.capabilities


def check_generator_class(cls: type) -> None:
    """Raise TypeError if ``cls`` does not look like a Generator class."""
    missing = [a for a in ("capabilities", "Config", "fit", "generate", "save", "load") if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} is not a Generator: missing {', '.join(missing)}")
    if not isinstance(cls.capabilities, Capabilities):
        raise TypeError(f"{cls.__qualname__}.capabilities must be a bench.interface.Capabilities")
    if not dataclasses.is_dataclass(cls.Config):
        raise TypeError(f"{cls.__qualname__}.Config must be a dataclass")
