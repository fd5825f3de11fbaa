"""Builders of tiny dataset folders in each dataset's exact distributed layout (test-only)."""
from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image

RNG = np.random.default_rng(0)


def image(path: Path, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    """Write a random image of (width, height) ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def mask(path: Path, size: tuple[int, int] = (12, 10), on: int = 255, box: tuple[int, int, int, int] = (2, 2, 6, 5),
         mode: str = "L") -> Path:
    """Write a binary mask: value ``on`` inside ``box`` = (x0, y0, x1, y1), 0 elsewhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    array = np.zeros((h, w), dtype=np.uint8)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = on
    if mode == "RGBA":
        rgba = np.stack([array, array, array, np.full_like(array, 255)], axis=-1)
        Image.fromarray(rgba, "RGBA").save(path)
    else:
        Image.fromarray(array, "L").save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]], gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
    else:
        path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def isic2018_task1(root: Path, counts: dict[str, int] | None = None) -> Path:
    counts = counts or {"Training": 3, "Validation": 2, "Test": 2}
    folder = root / "ISIC2018"
    start = 0
    for split, n in counts.items():
        for i in range(start, start + n):
            image(folder / f"ISIC2018_Task1-2_{split}_Input" / f"ISIC_{i:07d}.jpg")
            mask(folder / f"ISIC2018_Task1_{split}_GroundTruth" / f"ISIC_{i:07d}_segmentation.png")
        (folder / f"ISIC2018_Task1-2_{split}_Input" / "LICENSE.txt").write_text("CC BY-NC")
        start += n
    return folder


def isic2018_task3(root: Path) -> Path:
    folder = root / "ISIC2018"
    classes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    start = 24306
    for split, n in (("Training", 4), ("Validation", 2), ("Test", 2)):
        rows = []
        for k, i in enumerate(range(start, start + n)):
            image(folder / f"ISIC2018_Task3_{split}_Input" / f"ISIC_{i:07d}.jpg")
            rows.append([f"ISIC_{i:07d}", *[1.0 if c == (k + 2) % 7 else 0.0 for c in range(7)], 1.0])
        write_csv(folder / f"ISIC2018_Task3_{split}_GroundTruth" / f"ISIC2018_Task3_{split}_GroundTruth.csv",
                  ["image", *classes, "score_weight"], rows)
        start += n
    write_csv(folder / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_LesionGroupings.csv",
              ["image", "lesion_id", "diagnosis_confirm_type"], [["ISIC_0024306", "HAM_0000001", "histopathology"]])
    return folder


def ph2_official(root: Path, ids: list[str], diagnoses: list[int]) -> Path:
    folder = root / "PH2Dataset"
    lines = ["|| Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network | Dots/Globules |"
             " Streaks | Regression Areas | Blue-Whitish Veil || Colors ||"]
    for name, dx in zip(ids, diagnoses):
        case = folder / "PH2 Dataset images" / name
        image(case / f"{name}_Dermoscopic_Image" / f"{name}.bmp")
        mask(case / f"{name}_lesion" / f"{name}_lesion.bmp", on=1)
        hist = "Melanoma" if dx == 2 else ""
        lines.append(f"|| {name} || {hist:>20} ||          {dx} ||   1 |  AT |  A |  A |  A |  P ||  3  4 ||")
    (folder / "PH2_dataset.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    return folder


def ph2_flat(root: Path, ids: list[str], diagnoses: list[str]) -> Path:
    folder = root / "ph2"
    for name in ids:
        image(folder / "images" / f"{name}.png")
        mask(folder / "masks" / f"{name}_lesion.png")
    write_csv(folder / "ph2_labels.csv", ["image_id", "clinical_diagnosis", "histological_diagnosis", "asymmetry",
                                          "pigment_network", "dots_globules", "streaks", "regression_areas",
                                          "blue_whitish_veil", "colors"],
              [[n, d, "", 0, "T", "A", "A", "A", "A", "Dark-Brown"] for n, d in zip(ids, diagnoses)])
    return folder


FITZPATRICK17K_HEADER = ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label", "nine_partition_label",
                         "three_partition_label", "qc", "url", "url_alphanum"]


def fitzpatrick17k(root: Path, n: int = 20, unknown: bool = True, missing: bool = True) -> Path:
    """``fitzpatrick17k/``: the CSV with ``n`` rows cycling FST 1..6 (images ``h00.jpg`` ...), optionally a row
    with FST -1 and a row whose image is absent."""
    folder = root / "fitzpatrick17k"
    rows: list[list[object]] = [[f"h{i:02d}", (i % 6) + 1, 2, "psoriasis", "inflammatory", "non-neoplastic", "",
                                 "http://x", "x"] for i in range(n)]
    if unknown:
        rows.append(["hunknown", -1, -1, "acne", "", "", "", "", ""])
    if missing:
        rows.append(["hmissing", 3, 3, "acne", "", "", "", "", ""])
    write_csv(folder / "fitzpatrick17k.csv", FITZPATRICK17K_HEADER, rows)
    for i in range(n):
        image(folder / "images" / f"h{i:02d}.jpg")
    return folder


def ddi(root: Path, n: int = 3) -> Path:
    """``ddidiversedermatologyimages/``: metadata and ``n`` images next to it, skin tones cycling 12, 56, 34."""
    folder = root / "ddidiversedermatologyimages"
    kinds = [(12, "False", "foreign-body-granuloma"), (56, "True", "melanoma-in-situ"), (34, "False", "eczema")]
    rows = [[i, i + 1, f"{i + 1:06d}.png", *kinds[i % 3]] for i in range(n)]
    write_csv(folder / "ddi_metadata.csv", ["", "DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"], rows)
    for i in range(n):
        image(folder / f"{i + 1:06d}.png")
    return folder
