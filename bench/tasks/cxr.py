"""cxr: chest X-ray image and report generation (thesis chapter 6, Tables 6.1-6.5; spec research/ch6_cxr.md).

The condition is a CheXpert label vector (``labels``, binarised 14-vector, with the dataset's label sentence as
``prompt``); for report generation from real images (``input=real``) it also carries the image to describe, in
the condition's ``reference`` field. What the method must return follows ``output``:

* ``image``: images from label vectors. Scored (spec 5.1-5.4) by FD against the real test images (``fd[<extractor>]``;
  FID = ``fd[inception-v3]`` in the paper profile, ``fd[mini-clip]`` in mini, never called FID), PSNR and SSIM over
  index-aligned (generated_i, real test_i) pairs whose label vector conditioned generated_i (SSIM at data range 1,
  the correct value, and 255, the paper-compatible one), and the 5-pathology AUROC protocol
  (`bench.metrics.cxr_auroc`): ``n_auroc`` images per pathology vs ``n_auroc`` No-Finding images.
* ``report`` (``input=real``, Tables 6.3 / 6.5): a report for each real test image. Scored against the test
  report's ``reference_section`` (findings by default; samples without it are left out and counted) by corpus
  BLEU-1..4 (nltk, no smoothing), ROUGE-L (rouge-score, mean F) and CE F1 (the project's CheXpert-style labeler on
  both sides; 14-label macro, micro, 5-label micro; uncertain and blank count as negative).
* ``both`` (``input=generated``, Table 6.4): image and report from each label vector. Image metrics as above; CE F1 of
  the reports written for the AUROC set's generated images against the conditioning label vector (spec 5.8 [I]).

real-only scores real images as if generated (Table 6.2 "Original": training images with those labels).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.data.base import DataError
from bench.interface import Capabilities, Condition, RunContext, Sample, derive_seed
from bench.store import note_computed_here, note_reuse
from bench.tasks.base import Evaluation, SampleScores, Task, TaskData
from bench.tasks.common import open_dataset, resize_image, verify_read_splits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CxrConfig:
    """Protocol of the cxr task (thesis chapter 6; [I] marks choices the thesis leaves open)."""

    dataset: str = "mimic-cxr"
    """Dataset id (paper: mimic-cxr; mini: cxr-mini)."""
    dataset_options: dict = field(default_factory=dict)
    """Options passed to the dataset (e.g. mimic-cxr's split choice)."""
    image_size: int = 256
    """Side at which images are scored (thesis: 256)."""
    output: Literal["image", "report", "both"] = "both"
    """What the method returns: images, reports for real images, or image-report pairs."""
    input: Literal["real", "generated"] = "generated"
    """Which images the reports describe: real test images (Table 6.3, ``output=report``) or the generated ones
    (Table 6.4, ``output=both``); ``output=image`` takes ``generated``."""
    reference_section: Literal["findings", "findings+impression"] = "findings"
    """Reference text of BLEU / ROUGE-L / CE F1 with ``input=real`` (thesis: findings)."""
    n_generate: int = 1000
    """Images for FD / PSNR / SSIM, conditioned on the label vectors of the first n test samples (thesis: 1000)."""
    test_selection: Literal["random", "first"] = "random"
    """Which test samples condition the FD / PSNR / SSIM images: a seeded random draw (thesis: 1000 random PA test
    images) or the first ``n_generate`` in dataset order (code: the first 1000 PA rows of folder p19)."""
    n_auroc: int = 500
    """Images per pathology and No-Finding images of the AUROC protocol (thesis: 500)."""
    auroc_labels: Literal["single", "real"] = "single"
    """[I] Label vector of an AUROC condition: only that pathology positive, or a seeded draw among the training
    label vectors positive for it (No Finding: the No-Finding vector either way)."""
    auroc_classifier: Literal["xrv", "cxr-mini-cnn"] = "xrv"
    """Classifier of the AUROC protocol: torchxrayvision DenseNet-121 (local file) or a CNN trained on the dataset's
    real training images (mini: no XRV weights offline)."""
    classifier_epochs: int = 8
    """Epochs of the cxr-mini-cnn classifier."""
    extractor: str = "inception-v3"
    """Feature extractor of the image FD (``inception-v3`` = FID; ``mini-clip`` in mini)."""
    fd_xrv: bool = False
    """Also report ``fd[xrv-densenet121-res224-all]`` (torchxrayvision features; needs its local file)."""
    weights_dir: str | None = None
    """Folder with the extractor / classifier files (else ``$BENCH_WEIGHTS``)."""
    n_reports: int | None = None
    """Real test images described with ``input=real`` (None: every test sample with a reference section)."""
    grid_size: int = 16
    """Generated images kept as a PNG grid beside the record (0: none)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        want = {"image": "generated", "report": "real", "both": "generated"}[self.output]
        if self.input != want:
            raise ConfigError(f"task.output={self.output} needs task.input={want}, got {self.input}")
        if self.output != "report" and self.n_generate < 2:
            raise ConfigError(f"task.n_generate must be >= 2 (FD needs pairs), got {self.n_generate}")
        if self.output != "report" and self.n_auroc < 1:
            raise ConfigError(f"task.n_auroc must be >= 1, got {self.n_auroc}")
        if self.n_reports is not None and self.n_reports < 1:
            raise ConfigError(f"task.n_reports must be >= 1 or null, got {self.n_reports}")


@lru_cache(maxsize=1)
def _iu_sections() -> dict[str, tuple[str, str]]:
    from bench.data.cxr import iu_reports_archive, read_iu_reports

    return {r["uid"]: (r["sections"].get("FINDINGS", "") or "", r["sections"].get("IMPRESSION", "") or "")
            for r in read_iu_reports(iu_reports_archive())}


def report_sections(sample: Sample) -> tuple[str, str]:
    """(findings, impression) of a sample's report: from ``meta`` (mimic-cxr, iu-xray) or, for cxr-mini, the IU
    X-ray report it was drawn from (``meta["report_id"]``)."""
    meta = sample.meta or {}
    if "findings" in meta or "impression" in meta:
        return (meta.get("findings") or "").strip(), (meta.get("impression") or "").strip()
    if "report_id" in meta:
        return _iu_sections().get(meta["report_id"], ("", ""))
    return (sample.report or "").strip(), ""


def with_sections(sample: Sample) -> Sample:
    """The sample with ``meta["findings"]`` and ``meta["impression"]`` filled (the language modules train on them)."""
    findings, impression = report_sections(sample)
    return dataclasses.replace(sample, meta={**sample.meta, "findings": findings, "impression": impression})


def label_vector(categories: Sequence[str]) -> torch.Tensor:
    """Binary 14-vector (CheXpert order) with ``categories`` positive."""
    from bench.metrics.chexlabel import CATEGORIES

    return torch.tensor([1.0 if c in categories else 0.0 for c in CATEGORIES])


def label_sentence(labels: torch.Tensor) -> str:
    """The label sentence of a binarised 14-vector (cxr-mini's text condition)."""
    from bench.data.cxr_mini import label_prompt
    from bench.metrics.chexlabel import CATEGORIES

    return label_prompt([c for c, v in zip(CATEGORIES, labels.tolist()) if v >= 0.5])


class CxrTask(Task):
    """Chest X-ray image / report / pair generation (thesis Tables 6.1-6.5)."""

    id: ClassVar[str] = "cxr"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "CXR images and reports from CheXpert labels: FD/PSNR/SSIM, 5-pathology AUROC, BLEU/ROUGE-L/CE F1"
    needs: ClassVar[frozenset[str]] = frozenset({"image", "report"})
    main_metric: ClassVar[str] = "chexpert_f1_macro"
    # corpus BLEU, CE F1, FD and AUROC are set-level; the per-sample file lists what each sample got
    sample_scores: ClassVar[SampleScores] = SampleScores((), not_recomputed=("*",))
    Config = CxrConfig

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.needs = frozenset({"image": {"image"}, "report": {"report"}, "both": {"image", "report"}}[config.output])

    # -- what the task gives ---------------------------------------------------------------------
    def incompatibility(self, capabilities: Capabilities) -> str | None:
        why = super().incompatibility(capabilities)
        if why and not capabilities.fit_needs - self.fit_gives():
            runs = [o for o, need in (("image", {"image"}), ("report", {"report"}), ("both", {"image", "report"}))
                    if need <= capabilities.returns and o != self.config.output
                    and capabilities.requires <= ({"labels", "prompt", "reference"} if o == "report" else {"labels", "prompt"})]
            if runs:
                o = runs[-1]
                why += f" (it runs with task.output={o} task.input={'real' if o == 'report' else 'generated'})"
        return why

    def fit_gives(self) -> frozenset[str]:
        return frozenset()  # images, label vectors and reports: no masks

    def given(self) -> frozenset[str]:
        return frozenset({"labels", "prompt"} | ({"reference"} if self.config.output == "report" else set()))

    def describe_generator_inputs(self, method_id: str, method_config: Any) -> list[dict[str, str]]:
        c = self.config
        rows = [{"input": "labels", "resolution": "14 CheXpert labels", "source": f"{c.dataset} label vectors",
                 "prompt": "label sentence"}]
        if c.output == "report":
            rows.append({"input": "image", "resolution": f"{c.image_size} px", "source": f"{c.dataset} test images"})
        return rows

    # -- data ----------------------------------------------------------------------------------------
    def load(self, ctx: RunContext) -> TaskData:
        c = self.config
        ds = open_dataset(c.dataset, c.dataset_options, c.image_size, ctx)
        splits = {name: ds.load(name) for name in ("train", "test")}
        for name, samples in splits.items():
            if len(samples) < 2:
                raise DataError(f"dataset '{c.dataset}' split '{name}' has {len(samples)} samples; need at least 2")
        if c.output != "report" and c.n_generate > len(splits["test"]):
            raise DataError(f"task.n_generate={c.n_generate} exceeds the {len(splits['test'])} test samples of "
                            f"'{c.dataset}' (PSNR/SSIM pair each generated image with its test image)")
        verify_read_splits(ds, splits)
        return TaskData(c.dataset, splits, {name: ds.split_checksum(name) for name in splits})

    def fit_identity(self) -> dict[str, Any]:
        c = self.config
        return {"dataset": c.dataset, "dataset_options": c.dataset_options, "image_size": c.image_size}

    def fit_set(self, data: TaskData) -> Sequence[Sample]:
        """The training samples with their findings and impression in meta (the F / F+I language variants)."""
        train = data.splits["train"]
        return train.map(with_sections) if hasattr(train, "map") else [with_sections(s) for s in train]

    # -- conditions -----------------------------------------------------------------------------------
    def _report_indices(self, data: TaskData) -> tuple[list[int], int]:
        """Test samples described with ``input=real`` (those with a reference section) and how many lack one."""
        test = data.splits["test"]
        keep, missing = [], 0
        for i in range(len(test)):
            findings, impression = report_sections(test[i])
            text = findings if self.config.reference_section == "findings" else " ".join(t for t in (findings, impression) if t)
            if text:
                keep.append(i)
            else:
                missing += 1
            if self.config.n_reports is not None and len(keep) >= self.config.n_reports:
                break
        return keep, missing

    def _fid_indices(self, data: TaskData) -> list[int]:
        """Test samples whose label vectors condition the FD / PSNR / SSIM images (generated_i pairs with test_i)."""
        n, total = self.config.n_generate, len(data.splits["test"])
        if self.config.test_selection == "first":
            return list(range(n))
        return [int(i) for i in np.random.default_rng(derive_seed(0, 67)).choice(total, size=n, replace=False)]

    def _auroc_plan(self, data: TaskData) -> list[tuple[str, torch.Tensor]]:
        """(pathology display name or "No Finding", label vector) of each AUROC condition."""
        from bench.metrics.cxr_auroc import NEGATIVE, PATHOLOGIES

        c = self.config
        plan: list[tuple[str, torch.Tensor]] = []
        train = data.splits["train"]
        rng = np.random.default_rng(derive_seed(0, 61))
        pool: dict[str, list[int]] = {}
        if c.auroc_labels == "real":
            from bench.metrics.chexlabel import CATEGORIES

            for i in range(len(train)):
                lab = train[i].labels
                for display, cat in PATHOLOGIES.items():
                    if lab[CATEGORIES.index(cat)] >= 0.5:
                        pool.setdefault(display, []).append(i)
        for display, cat in PATHOLOGIES.items():
            for _ in range(c.n_auroc):
                if c.auroc_labels == "real":
                    if not pool.get(display):
                        raise DataError(f"no training label vector is positive for {display} (task.auroc_labels=real)")
                    plan.append((display, train[int(rng.choice(pool[display]))].labels.clone()))
                else:
                    plan.append((display, label_vector([cat])))
        plan += [(NEGATIVE, label_vector([NEGATIVE])) for _ in range(c.n_auroc)]
        return plan

    def conditions(self, data: TaskData, ctx: RunContext) -> list[Condition]:
        c = self.config
        test = data.splits["test"]
        out: list[Condition] = []
        if c.output == "report":
            for k, i in enumerate(self._report_indices(data)[0]):
                s = test[i]
                out.append(Condition(labels=s.labels, prompt=label_sentence(s.labels), reference=s.image,
                                     meta={"index": k, "set": "report", "source_id": s.meta.get("id")}))
            return out
        for k, i in enumerate(self._fid_indices(data)):
            s = test[i]
            out.append(Condition(labels=s.labels, prompt=label_sentence(s.labels),
                                 meta={"index": k, "set": "fid", "source_id": s.meta.get("id")}))
        for k, (name, labels) in enumerate(self._auroc_plan(data)):
            out.append(Condition(labels=labels, prompt=label_sentence(labels),
                                 meta={"index": c.n_generate + k, "set": "auroc", "pathology": name}))
        return out

    # -- evaluation ---------------------------------------------------------------------------------
    def _stack(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        size = self.config.image_size
        return torch.stack([resize_image(x if x.shape[0] == 3 else x.expand(3, -1, -1), size) for x in images])

    def _scorer(self, data: TaskData, ctx: RunContext) -> Any:
        from bench.metrics.cxr_auroc import load_scorer

        c = self.config
        if c.auroc_classifier == "xrv":
            return load_scorer("xrv", weights_dir=c.weights_dir)
        train = data.splits["train"]
        key = f"{data.checksums['train']}-{c.image_size}-{c.classifier_epochs}"
        cache = Path(ctx.cache_dir or ctx.work_dir) / "cxr" / f"label-cnn-{key[:24]}.safetensors"
        if cache.exists():
            note_reuse(ctx.reused, "label classifier (cxr-mini-cnn)", cache)
            return load_scorer("cxr-mini-cnn", cache=cache)
        images = self._stack([train[i].image for i in range(len(train))])
        labels = torch.stack([train[i].labels for i in range(len(train))])
        scorer = load_scorer("cxr-mini-cnn", images, labels, cache=cache, epochs=c.classifier_epochs, seed=0)
        note_computed_here(cache)
        return scorer

    def evaluate(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext, method_id: str) -> Evaluation:
        if self.config.output == "report":
            return self._evaluate_reports(data, synthetic)
        return self._evaluate_images(data, synthetic, ctx)

    def _evaluate_reports(self, data: TaskData, synthetic: Sequence[Sample]) -> Evaluation:
        from bench.metrics.chexlabel import chexpert_f1, label_reports
        from bench.metrics.text import bleu_scores, rouge_l

        c = self.config
        indices, missing = self._report_indices(data)
        test = data.splits["test"]
        comparisons: dict[str, Any] = {}
        refs = []
        for i in indices:
            findings, impression = report_sections(test[i])
            refs.append(findings if c.reference_section == "findings" else " ".join(t for t in (findings, impression) if t))
        if len(synthetic) == 0:  # real-only: the test reports' own other section would be a different task; score refs
            raise DataError("task cxr with output=report scores generated reports; real-only generates none")
        if len(synthetic) != len(refs):
            raise ValueError(f"{len(synthetic)} reports for {len(refs)} test images")
        hyps = [s.report or "" for s in synthetic]
        metrics = bleu_scores(refs, hyps)
        per_pair = rouge_l(refs, hyps, per_pair=True)
        metrics["rouge_l"] = float(np.mean(per_pair))
        ref_labels, gen_labels = label_reports(refs), label_reports(hyps)
        metrics.update(chexpert_f1(ref_labels, gen_labels))
        rows = [{"id": test[i].meta.get("id"), "rouge_l": float(r), "reference": ref, "generated": h,
                 "reference_positive": _positives(rl), "generated_positive": _positives(gl)}
                for i, r, ref, h, rl, gl in zip(indices, per_pair, refs, hyps, ref_labels, gen_labels)]
        comparisons["labeler"] = "bench.metrics.chexlabel (CheXpert-style approximation, not the CheXpert labeler)"
        return Evaluation(metrics=metrics, higher_is_better={k: True for k in metrics}, comparisons=comparisons,
                          per_sample=rows, counts={"generated": len(hyps), "test": len(refs),
                                                   "test_without_reference_section": missing})

    def _evaluate_images(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext) -> Evaluation:
        from bench.metrics.chexlabel import chexpert_f1, label_reports
        from bench.metrics.cxr_auroc import NEGATIVE, PATHOLOGIES, auroc_scores
        from bench.metrics.image import FrechetDistance, psnr, ssim, ssim_key

        c = self.config
        test, train = data.splits["test"], data.splits["train"]
        comparisons: dict[str, Any] = {}
        plan = self._auroc_plan(data)
        real_only = len(synthetic) == 0
        if real_only:
            fid_images = [train[i].image for i in range(min(c.n_generate, len(train)))]
            auroc_images, auroc_names = self._real_auroc_set(train)
            reports: list[str] = []
            comparisons["scored_set"] = "real training images (real-data reference; nothing generated)"
        else:
            if len(synthetic) != c.n_generate + len(plan):
                raise ValueError(f"{len(synthetic)} samples for {c.n_generate + len(plan)} conditions")
            fid_images = [s.image for s in synthetic[:c.n_generate]]
            auroc_images = [s.image for s in synthetic[c.n_generate:]]
            auroc_names = [name for name, _ in plan]
            reports = [s.report or "" for s in synthetic[c.n_generate:]] if c.output == "both" else []
        fake = self._stack(fid_images)
        pair_ids = self._fid_indices(data)[:len(fake)]
        real = self._stack([test[i].image for i in pair_ids])
        fd = FrechetDistance(self._fd_extractor(c.extractor), c.extractor)
        fd.update(self._stack([test[i].image for i in range(len(test))]), real=True)
        fd.update(fake, real=False)
        metrics = dict(fd.compute())
        if c.fd_xrv:
            fdx = FrechetDistance(self._fd_extractor("xrv-densenet121-res224-all"), "xrv-densenet121-res224-all")
            fdx.update(self._stack([test[i].image for i in range(len(test))]), real=True)
            fdx.update(fake, real=False)
            metrics.update(fdx.compute())
        pairs_psnr = psnr(fake, real, data_range=1.0)
        metrics["psnr"] = float(pairs_psnr.mean())
        per_ssim = {r: ssim(fake, real, data_range=r) for r in (1.0, 255.0)}
        for r, v in per_ssim.items():
            metrics[ssim_key(r)] = float(v.double().mean())
        scorer = self._scorer(data, ctx)
        scores = scorer.score(self._stack(auroc_images))
        names = np.asarray(auroc_names)
        neg = names == NEGATIVE
        metrics.update(auroc_scores({p: (scores[p][names == p], scores[p][neg]) for p in PATHOLOGIES}))
        comparisons["auroc_classifier"] = scorer.name
        rows = [{"id": test[i].meta.get("id"), "set": "fid", "psnr": float(pairs_psnr[k]),
                 "ssim_range1": float(per_ssim[1.0][k]), "ssim_range255": float(per_ssim[255.0][k])}
                for k, i in enumerate(pair_ids)]
        for k, name in enumerate(auroc_names):
            rows.append({"id": f"auroc-{k}", "set": "auroc", "pathology": name,
                         **{f"score[{p}]": float(scores[p][k]) for p in PATHOLOGIES}})
        counts = {"generated": 0 if real_only else len(synthetic), "fid_pairs": len(fake), "real_reference": len(test),
                  "auroc_images": len(auroc_images)}
        if reports:
            cond_labels = np.stack([lab.numpy() for _, lab in plan])
            gen_labels = label_reports(reports)
            metrics.update(chexpert_f1(cond_labels, gen_labels))
            for k, (rep, gl) in enumerate(zip(reports, gen_labels)):
                rows[len(fake) + k].update({"generated": rep, "generated_positive": _positives(gl),
                                            "condition_positive": _positives(cond_labels[k])})
            comparisons["f1_reference"] = "conditioning label vectors of the AUROC set (spec 5.8 [I])"
            counts["reports"] = len(reports)
        higher = {k: not k.startswith("fd[") for k in metrics}
        artifacts = {}
        if c.grid_size:
            from bench.tasks.common import save_pair_grid

            grid = save_pair_grid(fake[:c.grid_size], None, Path(ctx.work_dir) / "samples.png", c.grid_size)
            if grid is not None:
                artifacts["samples"] = str(grid)
        return Evaluation(metrics=metrics, higher_is_better=higher, comparisons=comparisons, per_sample=rows,
                          counts=counts, artifacts=artifacts)

    def _real_auroc_set(self, train: Sequence[Sample]) -> tuple[list[torch.Tensor], list[str]]:
        """Table 6.2 "Original": up to ``n_auroc`` real training images positive for each pathology and as many
        No-Finding ones."""
        from bench.metrics.chexlabel import CATEGORIES
        from bench.metrics.cxr_auroc import NEGATIVE, PATHOLOGIES

        c = self.config
        images, names = [], []
        wanted = {**{d: CATEGORIES.index(cat) for d, cat in PATHOLOGIES.items()}, NEGATIVE: CATEGORIES.index(NEGATIVE)}
        taken = {d: 0 for d in wanted}
        for i in range(len(train)):
            lab = train[i].labels
            for d, j in wanted.items():
                if lab[j] >= 0.5 and taken[d] < c.n_auroc:
                    images.append(train[i].image)
                    names.append(d)
                    taken[d] += 1
        empty = [d for d, n in taken.items() if n == 0]
        if empty:
            raise DataError(f"no real training image is positive for {', '.join(empty)}")
        return images, names

    def _fd_extractor(self, name: str) -> Any:
        from bench.tasks.common import load_fd_extractor

        return load_fd_extractor(name, self.config.weights_dir)


def _positives(labels: Any) -> str:
    """'|'-joined CheXpert names that are 1 in a label row."""
    from bench.metrics.chexlabel import CATEGORIES

    return "|".join(c for c, v in zip(CATEGORIES, np.asarray(labels, float)) if v == 1)

