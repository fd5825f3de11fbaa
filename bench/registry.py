"""Registries of tasks, methods and datasets, by id.

Built-in entries are registered as ``"module:attr"`` strings and imported on the
first `Registry.get`, so ``bench --help`` and ``bench list`` stay light.
External methods arrive through the entry-point group ``bench.methods``; any
importable class can also be named directly as ``package.module:ClassName``.
"""
from __future__ import annotations

import difflib
import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownEntryError(KeyError):
    """Raised for an id that is not registered; the message lists the valid ids."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def import_target(target: str) -> Any:
    """Import ``"package.module:attr"`` (attr may be dotted)."""
    if ":" not in target:
        raise ValueError(f"'{target}' is not of the form 'package.module:Name'")
    module_name, attr = target.split(":", 1)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module '{module_name}' for '{target}': {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module '{module_name}' has no attribute '{attr}' (from '{target}')") from None
    return obj


class Registry(Generic[T]):
    """A name -> object map with lazy string targets, duplicate checks and suggestions.

    Args:
        kind: what the registry holds ("task", "method", ...), used in messages.
        entry_point_group: entry-point group scanned once, on first lookup.
        validate: called on every resolved object; raises TypeError if it is not a ``kind``.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None,
                 validate: Callable[[Any], None] | None = None) -> None:
        self.kind = kind
        self._group = entry_point_group
        self._validate = validate
        self._targets: dict[str, Any] = {}
        self._resolved: dict[str, T] = {}
        self._entry_points_loaded = entry_point_group is None
        self._plugins: set[str] = set()
        self._lock = threading.RLock()

    def register(self, name: str, target: Any = None) -> Any:
        """Register ``target`` (an object or a ``"module:attr"`` string) under ``name``.

        Without ``target`` it returns a decorator.
        """
        if target is None:
            def decorator(obj: T) -> T:
                self.register(name, obj)
                return obj
            return decorator
        with self._lock:
            if name in self._targets and self._targets[name] is not target and self._targets[name] != target:
                raise ValueError(f"{self.kind} '{name}' is already registered to {self._targets[name]!r}")
            self._targets[name] = target
        return target

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self._group):
            if ep.name in self._targets:
                logger.warning("entry point %s=%s ignored: '%s' is a built-in %s", ep.name, ep.value, ep.name, self.kind)
                continue
            self._targets[ep.name] = ep.value
            self._plugins.add(ep.name)

    def plugins(self) -> set[str]:
        """Names registered by other packages through the entry-point group."""
        with self._lock:
            self._load_entry_points()
            return set(self._plugins)

    def names(self) -> list[str]:
        with self._lock:
            self._load_entry_points()
            return sorted(self._targets)

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        shown = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
        return f"Unknown {self.kind} '{name}'.{hint} Valid {self.kind}s: {shown}"

    def get(self, name: str) -> T:
        """Resolve ``name``: a registered id, or for methods a ``module:Class`` path."""
        with self._lock:
            self._load_entry_points()
            if name in self._resolved:
                return self._resolved[name]
            if name in self._targets:
                target = self._targets[name]
            elif ":" in name:
                target = name
            else:
                raise UnknownEntryError(self.unknown_message(name))
            obj = import_target(target) if isinstance(target, str) else target
            if self._validate is not None:
                self._validate(obj)
            self._resolved[name] = obj
            return obj


def _validate_method(obj: Any) -> None:
    from bench.interface import check_generator_class

    if not isinstance(obj, type):
        raise TypeError(f"method target {obj!r} is not a class")
    check_generator_class(obj)


TASKS: Registry[Any] = Registry("task")
METHODS: Registry[Any] = Registry("method", entry_point_group="bench.methods", validate=_validate_method)
DATASETS: Registry[Any] = Registry("dataset")

# --- built-in tasks -------------------------------------------------------------------
TASKS.register("seg-aug", "bench.tasks.derm_seg:SegAugTask")
TASKS.register("derm-cls", "bench.tasks.derm_cls:DermClsTask")
TASKS.register("derm-quality", "bench.tasks.derm_quality:DermQualityTask")
TASKS.register("lowcontrast", "bench.tasks.lowcontrast:LowContrastTask")
TASKS.register("skin-tone", "bench.tasks.skintone:SkinToneTask")
TASKS.register("concept", "bench.tasks.concept:ConceptTask")
TASKS.register("cxr", "bench.tasks.cxr:CxrTask")
TASKS.register("radimagenet-synthesis", "bench.tasks.radimagenet_synthesis:RadImageNetSynthesisTask")

# --- built-in methods and baselines ----------------------------------------------------
METHODS.register("real-only", "baselines.real_only:RealOnly")
METHODS.register("classic-aug", "baselines.classic_aug:ClassicAug")
METHODS.register("real-random", "baselines.real_random:RealRandom")
METHODS.register("real-lowcontrast", "baselines.real_lowcontrast:RealLowContrast")
# controls of every task (issue 23): the positive (perfect synthetic data) and the negative (no information)
METHODS.register("world-oracle", "baselines.world_oracle:WorldOracle")
METHODS.register("noise", "baselines.noise:Noise")
METHODS.register("didgen", "methods.didgen:DiDGen")
METHODS.register("dualbranch", "methods.dualbranch:DualBranch")
METHODS.register("attencraft", "methods.attencraft:AttenCraft")
METHODS.register("sd-finetune", "baselines.sd_finetune:SDFinetune")
METHODS.register("controlnet", "baselines.controlnet:ControlNet")
METHODS.register("meddiff-ft", "methods.meddiff_ft:MedDiffFT")
METHODS.register("diffboost", "methods.diffboost:DiffBoost")
METHODS.register("t2i-adapter", "baselines.t2i_adapter:T2IAdapterBaseline")
METHODS.register("pix2pixhd", "baselines.pix2pixhd:Pix2PixHD")
METHODS.register("pix2pix", "baselines.pix2pix:Pix2Pix")
METHODS.register("controlnet-styleid", "baselines.controlnet_styleid:ControlNetStyleID")
METHODS.register("dreambooth", "baselines.dreambooth:DreamBooth")
METHODS.register("ip-adapter", "baselines.ip_adapter:IPAdapter")
METHODS.register("zestguide", "baselines.zestguide:ZestGuide")
METHODS.register("attn-refocus", "baselines.attn_refocus:AttnRefocus")
# chapter 3 (multi-concept customization) baselines
METHODS.register("custom-diffusion", "baselines.custom_diffusion:CustomDiffusion")
METHODS.register("disendiff", "baselines.disendiff:DisenDiff")
METHODS.register("break-a-scene", "baselines.break_a_scene:BreakAScene")
METHODS.register("pgan", "baselines.pgan:PGAN")
METHODS.register("sl-stylegan", "baselines.sl_stylegan:SLStyleGAN")
# chapter 6 (CXR images and reports)
METHODS.register("label-template", "baselines.label_template:LabelTemplate")
METHODS.register("cxr-irgen", "methods.cxr_irgen:CxrIrgen")
METHODS.register("retrieval", "baselines.retrieval:Retrieval")
METHODS.register("cxr-repair-select", "baselines.retrieval:CxrRepairSelect")
METHODS.register("vanilla-ldm", "baselines.vanilla_ldm:VanillaLDM")
METHODS.register("r2gen", "baselines.r2gen:R2Gen")
METHODS.register("m2trans", "baselines.m2trans:M2Trans")
# skin-tone annotators (thesis Table 5.1; methods/skintone)
METHODS.register("ita-ycbcr", "methods.skintone:ItaYCbCr")
METHODS.register("ita-8patch", "methods.skintone:Ita8Patch")
METHODS.register("resnet18", "methods.skintone:ResNet18")
METHODS.register("vgg16", "methods.skintone:VGG16")
METHODS.register("densenet121", "methods.skintone:DenseNet121")
METHODS.register("efficientnet-v2", "methods.skintone:EfficientNetV2")
METHODS.register("mobilenet-v2", "methods.skintone:MobileNetV2")
METHODS.register("vit-b16", "methods.skintone:ViTB16")
METHODS.register("ensemble-lr", "methods.skintone:EnsembleLR")
METHODS.register("ensemble-rf", "methods.skintone:EnsembleRF")
METHODS.register("ensemble-svm", "methods.skintone:EnsembleSVM")
METHODS.register("ensemble-dt", "methods.skintone:EnsembleDT")
METHODS.register("ensemble-et", "methods.skintone:EnsembleET")
METHODS.register("ensemble-adaboost", "methods.skintone:EnsembleAdaBoost")
METHODS.register("ensemble-gb", "methods.skintone:EnsembleGB")

# --- built-in datasets -------------------------------------------------------------------
DATASETS.register("derm-mini", "bench.data.derm_mini:DermMini")
DATASETS.register("ph2-mini", "bench.data.derm_mini:Ph2Mini")
DATASETS.register("concept-mini", "bench.data.concept_mini:ConceptMini")
DATASETS.register("cxr-mini", "bench.data.cxr_mini:CxrMini")
DATASETS.register("busi-mini", "bench.data.ultrasound_mini:BusiMini")
DATASETS.register("ddti-mini", "bench.data.ultrasound_mini:DdtiMini")
DATASETS.register("ct-spleen-mini", "bench.data.volume_mini:CtSpleenMini")
DATASETS.register("mri-prostate-mini", "bench.data.volume_mini:MriProstateMini")
DATASETS.register("pretrain-mix-mini", "bench.data.pretrain_mix:PretrainMixMini")
DATASETS.register("isic2018-task1", "bench.data.isic:Isic2018Task1")
DATASETS.register("isic2018-task3", "bench.data.isic:Isic2018Task3")
DATASETS.register("isic2017", "bench.data.isic:Isic2017")
DATASETS.register("isic2016", "bench.data.isic:Isic2016")
DATASETS.register("ham10000", "bench.data.isic:Ham10000")
DATASETS.register("ph2", "bench.data.ph2:PH2")
DATASETS.register("derm7pt", "bench.data.derm7pt:Derm7pt")
DATASETS.register("fitzpatrick17k", "bench.data.skintone:Fitzpatrick17k")
DATASETS.register("ddi", "bench.data.skintone:DDI")
DATASETS.register("busi", "bench.data.ultrasound:BUSI")
DATASETS.register("ddti", "bench.data.ultrasound:DDTI")
DATASETS.register("msd-spleen", "bench.data.msd:MsdSpleen")
DATASETS.register("msd-prostate", "bench.data.msd:MsdProstate")
DATASETS.register("radimagenet", "bench.data.radimagenet:RadImageNet")
DATASETS.register("mimic-cxr", "bench.data.cxr:MimicCxr")
DATASETS.register("iu-xray", "bench.data.cxr:IuXray")
DATASETS.register("covid-cxr", "bench.data.cxr:CovidCxr")
DATASETS.register("disendiff", "bench.data.concepts:DisenDiff")
DATASETS.register("break-a-scene", "bench.data.concepts:BreakAScene")
DATASETS.register("gen4gen", "bench.data.concepts:Gen4Gen")
