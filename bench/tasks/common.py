"""Helpers shared by tasks: dataset construction, tensor stacking, sample grids."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from bench.interface import RunContext, Sample

logger = logging.getLogger(__name__)


def open_dataset(dataset_id: str, options: dict[str, Any], image_size: int | None, ctx: RunContext) -> Any:
    """Build a registered dataset, with the data root required for real datasets."""
    from bench.data.base import DataError
    from bench.registry import DATASETS

    cls = DATASETS.get(dataset_id)
    if getattr(cls, "needs_root", True) and ctx.data_root is None:
        raise DataError(f"dataset '{dataset_id}' is read from disk: pass --data-root DIR "
                        f"(see `bench data info {dataset_id}` for the expected layout)")
    return cls(root=ctx.data_root, image_size=image_size, **options)


def verify_read_splits(dataset: Any, splits: dict[str, Sequence[Sample]]) -> None:
    """Decode every file of ``splits`` when ``dataset`` is read from disk, so that a corrupt or mismatched file in
    any split (not only the one the generator is fitted on) stops the run before fit (a procedural world has none)."""
    from bench.data.validate import verify_samples

    if getattr(dataset, "needs_root", True):
        for samples in splits.values():
            verify_samples(samples)


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) float -> (C, size, size), bilinear with antialiasing (a square squash, as the thesis does)."""
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) bool -> (size, size) bool, nearest neighbour."""
    if mask.shape[-2:] == (size, size):
        return mask.bool()
    return F.interpolate(mask[None, None].float(), size=(size, size), mode="nearest")[0, 0] > 0.5


def stack_pairs(samples: Sequence[Sample], size: int, what: str = "samples") -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, size, size) float and masks (N, size, size) bool from image-mask samples."""
    images, masks = [], []
    for i, s in enumerate(samples):
        if s.image is None or s.mask is None:
            sid = s.meta.get("id", i)
            raise ValueError(f"{what}[{sid}] lacks {'an image' if s.image is None else 'a mask'}")
        image = s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1)
        images.append(resize_image(image, size))
        masks.append(resize_mask(s.mask, size))
    if not images:
        return torch.zeros((0, 3, size, size)), torch.zeros((0, size, size), dtype=torch.bool)
    return torch.stack(images), torch.stack(masks)


def save_pair_grid(images: torch.Tensor, masks: torch.Tensor | None, path: Path, n: int = 16) -> Path | None:
    """A PNG grid of up to ``n`` image-mask pairs (image row above its mask row); ``masks=None``: images only."""
    if len(images) == 0:
        return None
    import numpy as np
    from PIL import Image

    n = min(n, len(images))
    cols = min(8, n)
    rows = (n + cols - 1) // cols
    h, w = images.shape[-2:]
    cell_h = h + 2 if masks is None else 2 * h + 4
    canvas = np.ones((rows * cell_h, cols * (w + 2), 3), dtype=np.uint8) * 255
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = r * cell_h, c * (w + 2)
        image = images[k].expand(3, -1, -1) if images[k].shape[0] == 1 else images[k]
        canvas[y:y + h, x:x + w] = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        if masks is not None:
            canvas[y + h + 1:y + 2 * h + 1, x:x + w] = (masks[k].numpy()[..., None] * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path


def load_lpips_trunk(trunk: str, weights_dir: str | None = None, seed: int = 0) -> tuple[Any, str]:
    """LPIPS model for diversity scores and the key suffix it reports under.

    ``imagenet``: AlexNet ImageNet weights from the weights dir (the thesis' LPIPS), suffix ``""``.
    ``random``: a seeded random AlexNet trunk with the package's linear heads, suffix ``"alex-random"``: a
    plumbing proxy for machines without the ImageNet file, never comparable with the papers' numbers.
    """
    if trunk == "imagenet":
        from bench.metrics.extractors import load_lpips

        return load_lpips(weights_dir=weights_dir), ""
    if trunk != "random":
        raise ValueError(f"lpips trunk must be 'imagenet' or 'random', got {trunk!r}")
    import warnings

    import lpips

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pnet_rand=True, pretrained=True, verbose=False)
    return model.eval(), "alex-random"


def metric_key(name: str, *qualifiers: str) -> str:
    """``name[q1,q2]`` with empty qualifiers dropped (``name`` when none is left)."""
    kept = [q for q in qualifiers if q]
    return f"{name}[{','.join(kept)}]" if kept else name


class _MiniClipImages(torch.nn.Module):
    """mini-clip's image tower as an extractor: images (N, 3, H, W) in [0, 1] -> unnormalised embeddings (N, d)."""

    def __init__(self, clip: Any) -> None:
        super().__init__()
        self.clip = clip
        self.model = clip.model  # registers the parameters (device discovery)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.image_embeddings(images, normalize=False).float()


def mini_clip_image_tower(weights_dir: str | Path | None = None, **_: Any) -> torch.nn.Module:
    """Extractor loader for ``mini-clip`` (the package's shipped weights; ``weights_dir`` is the BENCH weights dir
    of the other extractors and is not where mini-clip lives)."""
    from bench.diffusion.models import load_mini_clip

    return _MiniClipImages(load_mini_clip()).eval()


def load_fd_extractor(name: str, weights_dir: str | None = None) -> Any:
    """A feature extractor by id (``inception-v3``, ``dinov2-base``, ... from the weights dir; ``mini-clip`` shipped)."""
    from bench.metrics.extractors import load_extractor

    if name == "mini-clip":  # shipped with the package; not registered globally (the registry lists weight files)
        return mini_clip_image_tower()
    return load_extractor(name, weights_dir=weights_dir)


def mask_diversity(masks: torch.Tensor, trunk: str, weights_dir: str | None = None, n_pairs: int = 1000,
                   seed: int = 0) -> tuple[str, float]:
    """``lpips_diversity[masks(,alex-random)]``: mean LPIPS over seeded random pairs of binary masks (N, H, W).

    Masks are replicated to 3 channels; masks below 64 px are upsampled by nearest neighbour first (AlexNet's
    pooling needs 64 px; nearest keeps them binary). Thesis Tables 4.7 and 5.5.
    """
    from bench.metrics.image import lpips_diversity, masks_to_rgb

    model, suffix = load_lpips_trunk(trunk, weights_dir, seed)
    rgb = masks_to_rgb(masks)
    if rgb.shape[-1] < 64:
        rgb = torch.nn.functional.interpolate(rgb, size=(64, 64), mode="nearest")
    with torch.no_grad():
        return metric_key("lpips_diversity", "masks", suffix), lpips_diversity(model, rgb, n_pairs=n_pairs, seed=seed)


def generator_view(dataset_id: str, options: dict[str, Any], image_size: int, generator_image_size: int | None,
                   ctx: RunContext, split: str = "train", like: Sequence[Sample] | None = None) -> Any:
    """The ``split`` of a dataset as generators see it: read again from the original files at
    ``generator_image_size`` (thesis section 4.4: 512 px for the diffusion models), so that a generator is never
    fitted on or conditioned by images first squashed to the downstream size and upsampled again.

    Returns None when ``generator_image_size`` is None or equals ``image_size`` (the downstream view serves).
    ``like``: the downstream view of the split, whose sample ids this view must repeat in order.
    """
    from bench.data.base import DataError

    if generator_image_size is None or generator_image_size == image_size:
        return None
    view = open_dataset(dataset_id, options, generator_image_size, ctx).load(split)
    ids, like_ids = getattr(view, "ids", None), getattr(like, "ids", None)
    if ids is not None and like_ids is not None and list(ids) != list(like_ids):
        raise DataError(f"dataset '{dataset_id}' split '{split}' lists other ids at {generator_image_size} px than "
                        f"at {image_size} px")
    return view


def method_value(method_config: Any, key: str, default: Any = None) -> Any:
    """``method_config.key`` of a dataclass or dict config (None config or a missing key: ``default``)."""
    if method_config is None:
        return default
    if isinstance(method_config, dict):
        return method_config.get(key, default)
    return getattr(method_config, key, default)


def resolution_text(generator_image_size: int | None, image_size: int, method_config: Any) -> str:
    """The resolution row of `Task.describe_generator_inputs`: what the task reads, what the method works at."""
    res = method_value(method_config, "resolution")
    if generator_image_size is not None and generator_image_size != image_size:
        read = f"read at {generator_image_size} px from the original files"
    else:
        read = f"read at {image_size} px (the downstream view)"
    if res is None:
        return read
    if res != (generator_image_size or image_size):
        return f"{read}, resized to the method's {res} px"
    return f"{read} = the method's {res} px"


def prompt_form(method_config: Any, given: str | None) -> str:
    """The prompt row of `Task.describe_generator_inputs`: the generation prompt a method builds from its
    ``prompt`` option and the prompt the task gives (``given``, e.g. "class prompt"; None when it gives none)."""
    mode = method_value(method_config, "prompt")
    if not isinstance(mode, str) or mode not in ("prefix", "condition", "dermprompt"):
        return f"the method's own ({'task gives ' + given if given else 'no text prompt from the task'})"
    base = given if given else "DermPrompt prefix"
    if mode == "prefix":
        return "DermPrompt prefix only" + (f" (the task's {given} is not used)" if given else "")
    if mode == "condition":
        return base
    source = ("prompt file " + str(method_value(method_config, "prompt_file"))
              if method_value(method_config, "prompt_file") else "recycled training captions")
    if method_value(method_config, "rephrase_model"):
        source += ", rephrased by the local LLM"
    captions = method_value(method_config, "caption_file")
    caption_note = f"; training captions from {captions}" if captions else ""
    return f"{base} + DermPrompt ({source}{caption_note})"


def remove_checkpoints(work_dir: Path | str) -> None:
    """Delete the per-epoch training checkpoints of an evaluation (``<work_dir>/checkpoints``) once it is done."""
    import shutil

    shutil.rmtree(Path(work_dir) / "checkpoints", ignore_errors=True)


def refuse_real_masks(task_id: str, method_id: str, methods: Sequence[str], conditioning: str, source_method: str,
                      section: str) -> None:
    """The thesis conditions ``methods`` on the masks ``source_method`` generated: refuse ``method_id`` on real masks,
    naming the settings that give the thesis protocol (raises `IncompatibleMethodError`)."""
    from bench.tasks.base import IncompatibleMethodError

    if method_id in methods and conditioning == "real-masks":
        raise IncompatibleMethodError(
            f"Task '{task_id}' conditions '{method_id}' on the masks {source_method} generated (thesis {section}): "
            f"run {source_method} first, then add --set task.conditioning=generated-masks "
            f"--set task.mask_source=<its run id> (or set task.generated_mask_methods=[] to give it the real masks)")


def procedural_beside_real(main: Any, other: Any, what: str, option: str) -> bool:
    """True (and a warning) when ``other`` is a procedural world while ``main`` is read from disk: a mini/smoke
    transfer default must not score a real-data run on derm-mini under a real dataset's metric key (issue 22); and
    when both are procedural worlds of different ids: a breast-ultrasound or CT world is not scored on derm-mini."""
    if getattr(main, "needs_root", True) and not getattr(other, "needs_root", True):
        logger.warning("%s '%s' is a procedural world and the main dataset '%s' is real: not evaluated (set "
                       "task.%s to a real dataset under --data-root, e.g. ph2 / ham10000 / derm7pt)",
                       what, getattr(other, "id", "?"), getattr(main, "id", "?"), option)
        return True
    if not getattr(main, "needs_root", True) and not getattr(other, "needs_root", True) and \
            getattr(main, "id", None) != getattr(other, "id", None):
        # e.g. busi-mini or ct-spleen-mini under the mini profile's derm-mini transfer default (issue 21)
        logger.warning("%s '%s' is another procedural world than the main dataset '%s' (another modality): not "
                       "evaluated (set task.%s to '%s' with another world_seed in its options to score one)",
                       what, getattr(other, "id", "?"), getattr(main, "id", "?"), option, getattr(main, "id", "?"))
        return True
    return False


def training_text(method_config: Any, class_sentence: bool = False) -> str:
    """The prompt row of a fit set in `Task.describe_generator_inputs`: what text a DermPrompt-style method
    (DiDGen's family, which has ``caption_file``) is fine-tuned with."""
    if method_value(method_config, "caption_file", "absent") == "absent":
        return "the method's own training text"
    captions = method_value(method_config, "caption_file")
    required = bool(method_value(method_config, "require_captions"))
    if captions:
        source = f"captions of {captions}"
    elif required:
        source = "the dataset's captions (none on ISIC: give method.caption_file)"
    else:
        source = "the dataset's captions (the prefix alone where there are none)"
    required = " (required)" if required else ""
    head = "prefix + class sentence + DermPrompt" if class_sentence else "prefix + DermPrompt"
    return f"training text: {head} from {source}{required}"
