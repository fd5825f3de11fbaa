"""Ultrasound segmentation sets of MedDiff-FT and DiffBoost (research/papers_meddiff_diffboost.md A.8, B.8).

* ``busi``: Breast Ultrasound Images (Al-Dhabyani et al. 2020), ``Dataset_BUSI_with_GT/
  {benign,malignant,normal}/<class> (k).png`` with ``<class> (k)_mask.png`` and, for images with
  several lesions, ``_mask_1.png``...: the masks of an image are united.
* ``ddti``: the Digital Database of Thyroid Images (Pedraza et al. 2015) in its widely used
  pre-processed image/mask-pair form (637 pairs).

Neither has an official split; the splits are derived at load time with the card's seed.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from bench.data import io as dio
from bench.data.base import DataError, Problem
from bench.data.real import ALL, Record, RealDataset

logger = logging.getLogger(__name__)

BUSI_CLASSES = ("benign", "malignant", "normal")
_BUSI_MASK = re.compile(r"^(?P<stem>.+?)_mask(?:_(?P<k>\d+))?$")


class _Ultrasound(RealDataset):
    split_mode = "derived"
    splits = ("train", "val", "test", ALL)

    def __init__(self, root: Path | None = None, image_size: int | None = None, **options) -> None:
        super().__init__(root, image_size, **options)
        if self.options["channels"] not in (1, 3):
            raise DataError(f"dataset '{self.id}': option channels must be 1 or 3, got {self.options['channels']!r}")
        self.channels = int(self.options["channels"])  # type: ignore[misc]


class BUSI(_Ultrasound):
    """BUSI: image, union lesion mask (empty for ``normal``), class label (benign, malignant, normal).

    Options:
        include_normal: keep the 133 lesion-free ``normal`` images (default True; MedDiff-FT uses
            them as backgrounds).
        channels: 3 (default; the PNGs are grey stored as RGB) or 1.
    """

    id = "busi"
    fields = frozenset({"image", "mask", "label"})
    class_names = BUSI_CLASSES
    option_defaults = {"include_normal": True, "channels": 3}

    def looks_like(self, folder: Path) -> bool:
        return (folder / "benign").is_dir() and (folder / "malignant").is_dir()

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        records = []
        classes = BUSI_CLASSES if self.options["include_normal"] else BUSI_CLASSES[:2]
        for label, name in enumerate(BUSI_CLASSES):
            folder = self.folder / name
            if name not in classes:
                continue
            if not folder.is_dir():
                problems.append(Problem(str(folder), "missing folder"))
                continue
            images, masks = {}, {}
            for path in dio.list_images(folder):
                match = _BUSI_MASK.match(path.stem)
                if match:
                    masks.setdefault(match.group("stem"), []).append((int(match.group("k") or 0), path))
                else:
                    images[path.stem] = path
            for stem, image in sorted(images.items()):
                found = [p for _, p in sorted(masks.pop(stem, []))]
                if not found:
                    problems.append(Problem(str(image), f"missing mask {stem}_mask.png"))
                    continue
                records.append(Record(stem, image, tuple(found), label=label, stratum=name,
                                      meta={"class_name": name, "n_masks": len(found)}))
            for stem, found in sorted(masks.items()):
                for _, path in found:
                    problems.append(Problem(str(path), "unpaired mask: no image with this id"))
        return records, problems


class DDTI(_Ultrasound):
    """DDTI thyroid nodules as image/mask pairs with the same file stem.

    Accepted pair folders (first found): ``image/`` + ``mask/``, ``images/`` + ``masks/``,
    ``p_image/`` + ``p_mask/``, ``2_preprocessed_data/stage1/p_image`` + ``.../p_mask``. The
    original release (XML polygon annotations per case) is not read: convert it to pairs first.
    Ids ``<case>_<k>`` keep a case's images in one split.

    Options:
        channels: 3 (default) or 1.
    """

    id = "ddti"
    fields = frozenset({"image", "mask"})
    option_defaults = {"channels": 3}
    pair_dirs = (("image", "mask"), ("images", "masks"), ("p_image", "p_mask"),
                 ("2_preprocessed_data/stage1/p_image", "2_preprocessed_data/stage1/p_mask"))

    def _pairs(self, folder: Path) -> tuple[Path, Path] | None:
        for image_dir, mask_dir in self.pair_dirs:
            if (folder / image_dir).is_dir() and (folder / mask_dir).is_dir():
                return folder / image_dir, folder / mask_dir
        return None

    def looks_like(self, folder: Path) -> bool:
        return self._pairs(folder) is not None

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        image_dir, mask_dir = self._pairs(self.folder)
        masks = {p.stem.lower(): p for p in dio.list_images(mask_dir)}
        records = []
        for image in dio.list_images(image_dir):
            mask = masks.pop(image.stem.lower(), None)
            if mask is None:
                problems.append(Problem(str(image), f"missing mask {mask_dir.name}/{image.stem}.*"))
                continue
            case = re.match(r"^(\d+)_\d+", image.stem)
            records.append(Record(image.stem, image, (mask,), group=case.group(1) if case else image.stem,
                                  meta={"case": case.group(1) if case else None}))
        for mask in sorted(masks.values()):
            problems.append(Problem(str(mask), "unpaired mask: no image with this id"))
        return records, problems
