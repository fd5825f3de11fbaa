"""nnU-Net v2 (Isensee et al. 2021) as a downstream segmenter: the real pipeline through the ``nnunetv2`` package.

MedDiff-FT (spec A.9) trains "nnU-Net" beside UPerNet, DeepLabV3+ and Swin. Here one arm (real or real + generated
pairs) runs nnU-Net's own pipeline through its Python API, in a folder of the run's evaluate stage:

1. export: the arm's training pairs and the task's validation split to an nnU-Net raw dataset
   ``nnUNet_raw/Dataset001_segaug/`` (``imagesTr/<case>_0000.png`` RGB, nnU-Net's natural-image convention with
   channel names R, G, B as in its Dataset120_RoadSegmentation; ``labelsTr/<case>.png`` with labels 0 / 1;
   ``dataset.json`` by nnunetv2's ``generate_dataset_json``, file ending ``.png``); the images to predict go to
   ``imagesTs``;
2. fingerprint, plan (nnU-Net's default ``ExperimentPlanner``, plans ``nnUNetPlans``) and preprocess the ``2d``
   configuration (``extract_fingerprints`` / ``plan_experiments`` / ``preprocess``);
3. ``splits_final.json`` with one fold: train = the arm's pairs, val = the task's validation split;
4. train fold 0 of ``2d`` with the named trainer (``nnUNetTrainer``: 1000 epochs of 250 iterations, SGD, poly lr,
   Dice + CE with deep supervision, nnU-Net's augmentation); ``epochs`` / ``iterations_per_epoch`` override the
   trainer's counts; an interrupted training continues from nnU-Net's ``checkpoint_latest.pth``;
5. predict the test images with ``nnUNetPredictor.predict_from_files_sequential`` (sliding window, mirroring TTA,
   nnU-Net's defaults) from ``checkpoint_best.pth`` (MedDiff-FT A.9: "the best-performing weights on the validation
   set", nnU-Net's EMA pseudo-Dice on the val fold) or ``checkpoint_final.pth`` (nnU-Net's default), and read the
   predicted PNGs back as masks; the task scores them as any other segmenter's.

nnU-Net keeps its own loss (Dice + CE), optimiser and schedule: MedDiff-FT's focal + Dice (``task.loss``) applies to
the segmenters the task trains itself. The folders ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` are
set (as the environment variables nnunetv2 reads) only while a stage runs, inside the given folder, never in $HOME.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.errors import UserInputError

logger = logging.getLogger(__name__)

#: The dataset id and name of the exported raw dataset (one per arm folder, so the id never clashes).
DATASET_ID = 1
DATASET_NAME = "Dataset001_segaug"
CONFIGURATION = "2d"
PLANS = "nnUNetPlans"
EXTRA = "nnunet"


def require_nnunetv2() -> None:
    """One clear error when nnunetv2 is not installed, naming the pip extra."""
    try:
        import nnunetv2  # noqa: F401
    except ImportError as err:
        raise UserInputError(f"segmenter 'nnunetv2' (task.nnunet=nnunetv2) needs the nnunetv2 package, which is not "
                             f"installed ({err}): pip install 'medsynth-bench[{EXTRA}]', or set task.nnunet=dynunet "
                             "for the MONAI DynUNet twin") from None


def check_trainer(name: str) -> None:
    """One clear error when nnunetv2 has no trainer class ``name`` (nnU-Net's own lookup)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        with _quiet():
            recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        raise UserInputError(f"task.nnunet_trainer={name}: nnunetv2 has no trainer class of that name (e.g. "
                             "nnUNetTrainer, nnUNetTrainer_100epochs)") from None


@dataclass(frozen=True)
class NnUNetConfig:
    """How one arm's nnU-Net is trained and applied."""

    trainer: str = "nnUNetTrainer"
    """nnunetv2 trainer class, found by nnU-Net's own lookup (e.g. ``nnUNetTrainer_100epochs``)."""
    epochs: int | None = None
    """Epochs; None: the trainer's own (``nnUNetTrainer``: 1000)."""
    iterations_per_epoch: int | None = None
    """Training iterations per epoch; None: the trainer's own (250). When set, validation iterations per epoch are a
    fifth of it (at least 1; nnU-Net's 250 : 50)."""
    checkpoint: Literal["best", "final"] = "best"
    """Weights used for prediction: ``best`` (EMA pseudo-Dice on the val split; MedDiff-FT A.9 selects the best
    validation weights) or ``final`` (nnU-Net's default)."""


@dataclass
class NnUNetResult:
    """Predictions of one trained nnU-Net: ``predictions[name]`` (N, H, W) bool per predicted set."""

    predictions: dict[str, torch.Tensor]
    epochs: int
    best_epoch: int
    model_folder: Path


@contextlib.contextmanager
def nnunet_environment(folder: Path, **extra: str) -> Iterator[dict[str, Path]]:
    """Point nnunetv2 at ``folder/nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` (the environment
    variables it reads when it needs a folder) while the block runs, plus any ``extra`` variables; the previous
    values are restored after."""
    folders = {name: Path(folder) / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for path in folders.values():
        path.mkdir(parents=True, exist_ok=True)
    with _env(**{k: str(v) for k, v in folders.items()}, **extra):
        yield folders


def _to_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def _image_u8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 (the PNG nnU-Net's NaturalImage2DIO reads as 3 channels)."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def export_dataset(raw_root: Path, images: torch.Tensor, masks: torch.Tensor, val_images: torch.Tensor,
                   val_masks: torch.Tensor, predict: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Write the nnU-Net raw dataset ``raw_root/Dataset001_segaug`` and return its case lists.

    Args:
        images, masks: the arm's training pairs, (N, 3, H, W) float in [0, 1] and (N, H, W) bool.
        val_images, val_masks: the validation split (also in ``imagesTr`` / ``labelsTr``; splits_final.json keeps it
            out of training).
        predict: name -> images (M, 3, H, W) to predict, written to ``imagesTs`` as ``<name>_<k>_0000.png``.

    Returns:
        ``{"folder", "train", "val", "predict": {name: [case, ...]}}``.
    """
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    if images.shape[1] != 3:
        raise ValueError(f"nnU-Net export expects RGB images (N, 3, H, W), got {tuple(images.shape)}")
    folder = Path(raw_root) / DATASET_NAME
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    cases: dict[str, Any] = {"folder": folder, "train": [], "val": [], "predict": {}}
    for split, (x, y) in (("train", (images, masks)), ("val", (val_images, val_masks))):
        for k in range(len(x)):
            case = f"{split}_{k:05d}"
            _to_png(_image_u8(x[k]), folder / "imagesTr" / f"{case}_0000.png")
            _to_png(y[k].to(torch.uint8).numpy(), folder / "labelsTr" / f"{case}.png")
            cases[split].append(case)
    for name, x in (predict or {}).items():
        cases["predict"][name] = []
        for k in range(len(x)):
            case = f"{name}_{k:05d}"
            _to_png(_image_u8(x[k]), folder / "imagesTs" / f"{case}_0000.png")
            cases["predict"][name].append(case)
    generate_dataset_json(str(folder), {0: "R", 1: "G", 2: "B"}, {"background": 0, "lesion": 1},
                          len(cases["train"]) + len(cases["val"]), ".png", dataset_name=DATASET_NAME,
                          description="medsynth-bench seg-aug arm: training pairs (train_*) and validation split "
                                      "(val_*); splits_final.json holds the split",
                          license="as the source dataset", converted_by="medsynth-bench (bench.downstream.nnunet)")
    return cases


def plan_and_preprocess(verify: bool = False) -> None:
    """nnU-Net's fingerprint extraction, default planning and ``2d`` preprocessing of the exported dataset (inside
    `nnunet_environment`), one process."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    with _quiet():
        extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=verify, clean=True, verbose=False,
                             show_progress_bar=False)
        # the planner instantiates candidate networks with torch threads = nnUNet_n_proc_DA, which must be >= 1
        with _env(nnUNet_n_proc_DA="1") if os.environ.get("nnUNet_n_proc_DA") == "0" else contextlib.nullcontext():
            plan_experiments([DATASET_ID])
        preprocess([DATASET_ID], PLANS, configurations=(CONFIGURATION,), num_processes=(1,), verbose=False,
                   show_progress_bar=False)


def write_split(preprocessed_root: Path, train: list[str], val: list[str]) -> Path:
    """``splits_final.json`` with one fold (fold 0): the arm's pairs for training, the task's val split for
    validation."""
    path = Path(preprocessed_root) / DATASET_NAME / "splits_final.json"
    path.write_text(json.dumps([{"train": list(train), "val": list(val)}], indent=1))
    return path


def train(config: NnUNetConfig, device: torch.device, seed: int, log_file: Path) -> tuple[Any, int]:
    """Train fold 0 of ``2d`` (inside `nnunet_environment`); returns the trainer and the epochs run. An output folder
    with ``checkpoint_final.pth`` is not trained again; one with ``checkpoint_latest.pth`` continues from it."""
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    check_trainer(config.trainer)
    with _quiet(log_file):
        trainer = get_trainer_from_args(DATASET_NAME, CONFIGURATION, 0, config.trainer, PLANS, continue_training=True,
                                        device=device)
    if config.epochs is not None:
        trainer.num_epochs = int(config.epochs)
    if config.iterations_per_epoch is not None:
        trainer.num_iterations_per_epoch = int(config.iterations_per_epoch)
        trainer.num_val_iterations_per_epoch = max(1, int(config.iterations_per_epoch) // 5)
    out = Path(trainer.output_folder)
    if (out / "checkpoint_final.pth").exists():  # nnU-Net's own loading restores its per-epoch log (best epoch)
        logger.info("nnU-Net: %s already trained", out)
        with _quiet(log_file):
            trainer.load_checkpoint(str(out / "checkpoint_final.pth"))
        return trainer, trainer.num_epochs
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    with _quiet(log_file):
        maybe_load_checkpoint(trainer, continue_training=(out / "checkpoint_latest.pth").exists(),
                              validation_only=False)
        trainer.run_training()
    return trainer, trainer.num_epochs


def predict_cases(model_folder: Path, raw_folder: Path, cases: list[str], out_folder: Path, device: torch.device,
                  checkpoint: str, log_file: Path) -> torch.Tensor:
    """Predict ``imagesTs/<case>_0000.png`` with the trained fold 0 (no worker processes); (N, H, W) bool."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from PIL import Image

    out_folder.mkdir(parents=True, exist_ok=True)
    with _quiet(log_file):
        predictor = nnUNetPredictor(device=device, verbose=False, verbose_preprocessing=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(model_folder), use_folds=(0,),
                                                       checkpoint_name=f"checkpoint_{checkpoint}.pth")
        predictor.predict_from_files_sequential([[str(raw_folder / "imagesTs" / f"{c}_0000.png")] for c in cases],
                                                [str(out_folder / c) for c in cases], save_probabilities=False,
                                                overwrite=True)
    masks = [np.asarray(Image.open(out_folder / f"{c}.png")) > 0 for c in cases]
    if not masks:
        return torch.zeros((0, 0, 0), dtype=torch.bool)
    return torch.from_numpy(np.stack(masks))


def train_and_predict(images: torch.Tensor, masks: torch.Tensor, val_images: torch.Tensor, val_masks: torch.Tensor,
                      predict: dict[str, torch.Tensor], folder: Path, config: NnUNetConfig, device: torch.device,
                      seed: int, advance: Callable[..., None] | None = None) -> NnUNetResult:
    """One arm through nnU-Net: export, plan and preprocess, train on a custom split, predict ``predict``.

    Args:
        images, masks: the arm's training pairs, (N, 3, H, W) float in [0, 1] and (N, H, W) bool.
        val_images, val_masks: the task's validation split (nnU-Net's val fold: EMA pseudo-Dice, best checkpoint).
        predict: name -> images (M, 3, H, W) in [0, 1] to segment (the test split, a transfer set, the val split).
        folder: the arm's folder in the evaluate stage; nnU-Net's three folders and a log go under it.
        device: the run's device. On the CPU nnU-Net's data augmentation runs in the main process
            (``nnUNet_n_proc_DA=0``: one core, no background workers); on CUDA nnU-Net's own defaults apply (its
            augmentation workers, torch.compile; the ``nnUNet_n_proc_DA`` / ``nnUNet_compile`` variables of the user's
            environment are respected). nnU-Net trains on ``cuda:0`` whatever the index (choose the GPU with
            ``CUDA_VISIBLE_DEVICES``).
        seed: seeds Python's, numpy's and torch's generators before training (nnU-Net's sampling and augmentation
            draw from them; bit-exact repeats hold on the CPU only).

    Returns:
        `NnUNetResult` with (M, H, W) bool masks per name.
    """
    require_nnunetv2()
    folder = Path(folder)
    log_file = folder / "nnunet.log"
    extra = {"nnUNet_n_proc_DA": "0"} if device.type == "cpu" else {}
    if device.type == "cuda" and (device.index or 0) != 0:
        logger.warning("nnU-Net trains on cuda:0, not %s: choose the GPU with CUDA_VISIBLE_DEVICES", device)
    with nnunet_environment(folder, **extra) as roots:
        raw = roots["nnUNet_raw"] / DATASET_NAME
        trained = _trained_folder(roots["nnUNet_results"], config.trainer)
        cases = export_dataset(roots["nnUNet_raw"], images, masks, val_images, val_masks, predict)
        done = roots["nnUNet_preprocessed"] / DATASET_NAME / "splits_final.json"
        if not done.exists():  # written last: a killed planning or preprocessing starts again
            plan_and_preprocess()
            write_split(roots["nnUNet_preprocessed"], cases["train"], cases["val"])
        trainer, epochs = train(config, device, seed, log_file)
        if advance is not None:
            advance(epochs)
        best_epoch = _best_epoch(trainer, config.checkpoint, epochs)
        predictions = {name: predict_cases(trained, raw, case_list, folder / "predictions" / name, device,
                                           config.checkpoint, log_file)
                       for name, case_list in cases["predict"].items()}
    for name, x in predict.items():
        if predictions[name].shape != (len(x), *x.shape[-2:]):
            raise RuntimeError(f"nnU-Net predicted {tuple(predictions[name].shape)} for '{name}', expected "
                               f"{(len(x), *x.shape[-2:])}")
    return NnUNetResult(predictions, epochs, best_epoch, trained)


def _trained_folder(results_root: Path, trainer: str) -> Path:
    return Path(results_root) / DATASET_NAME / f"{trainer}__{PLANS}__{CONFIGURATION}"


def _best_epoch(trainer: Any, checkpoint: str, epochs: int) -> int:
    """The epoch whose weights predict: the final one, or the one ``checkpoint_best.pth`` holds (nnU-Net saves it
    at each strictly higher EMA pseudo-Dice: the first maximum of its logged ``ema_fg_dice``)."""
    ema = list(trainer.logger.get_value("ema_fg_dice", None) or [])
    if checkpoint == "final" or not ema:
        return epochs - 1
    return int(np.argmax(np.asarray(ema, dtype=np.float64)))


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables while the block runs, restoring (or removing) them after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet(log_file: Path | None = None) -> Iterator[None]:
    """nnU-Net reports through print(): send it to the arm's log file (or nowhere) instead of the bench's output."""
    if log_file is None:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as sink, contextlib.redirect_stdout(sink):
        yield


class NnUNetV2:
    """Registry entry of the ``nnunetv2`` segmenter: nnU-Net trains and predicts itself (`train_and_predict`), so
    the task calls it instead of building a module for its own trainer."""

    trains_itself: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("segmenter 'nnunetv2' is not an nn.Module factory: seg-aug runs it through "
                        "bench.downstream.nnunet.train_and_predict")
