"""MSD Spleen / Prostate: NIfTI volumes read with nibabel and sliced to 2D, case-level k-fold splits."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from bench.data.base import DataError
from bench.data.msd import MsdProstate, MsdSpleen, normalise_slice
from bench.data.validate import verify_samples


def _volume(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))


def _task(root, name, prefix, n_cases, channels=None):
    folder = root / name
    rng = np.random.default_rng(1)
    for c in range(n_cases):
        shape = (10, 8, 4)  # (x, y, z)
        image = rng.normal(0, 100, shape + ((channels,) if channels else ())).astype(np.float32)
        label = np.zeros(shape, dtype=np.uint8)
        label[1:7, 1:6, 1] = 1          # 30 pixels: kept
        label[2:5, 2:5, 2] = 2 if channels else 1   # 9 pixels: dropped (<= 20)
        label[0:6, 0:5, 3] = 1          # 30 pixels: kept
        _volume(folder / "imagesTr" / f"{prefix}_{c}.nii.gz", image)
        _volume(folder / "labelsTr" / f"{prefix}_{c}.nii.gz", label)
    (folder / "imagesTr" / f"._{prefix}_0.nii.gz").write_bytes(b"macOS resource fork")
    (folder / "dataset.json").write_text(json.dumps({"name": name, "training": []}))
    return folder


def test_spleen_slices_filter_and_kfold(tmp_path):
    _task(tmp_path, "Task09_Spleen", "spleen", 6)
    data = MsdSpleen(root=tmp_path, image_size=16)
    ids = [sid for s in data.splits for sid in data.split_ids(s)]
    assert len(ids) == 12 and all(sid.endswith((":z001", ":z003")) for sid in ids)
    cases = {s: sorted({data.records[i].group for i in data.split_ids(s)}) for s in data.splits}
    assert cases["test"] == ["spleen_0", "spleen_1"]  # KFold(3) unshuffled over sorted cases, fold 0
    assert MsdSpleen(root=tmp_path, fold=2).split_ids("test")[0].startswith("spleen_4")
    assert len(cases["val"]) == 1 and not set(cases["val"]) & set(cases["train"])
    sample = data.load("test")[0]
    assert sample.image.shape == (1, 16, 16) and 0.0 <= float(sample.image.min()) < float(sample.image.max()) <= 1.0
    assert sample.mask.any() and sample.meta["z"] == 1 and sample.meta["foreground_pixels"] == 30
    native = MsdSpleen(root=tmp_path).load("test")[0]
    assert native.mask.shape == (8, 10) and int(native.mask.sum()) == 30  # rows = y, cols = x
    assert float(native.image.min()) == 0.0 and float(native.image.max()) == 1.0
    verify_samples(data.load("train"))
    assert data.check() == []


def test_prostate_whole_gland_and_modality(tmp_path):
    _task(tmp_path, "Task05_Prostate", "prostate", 3, channels=2)
    t2 = MsdProstate(root=tmp_path).load("test")[0]
    adc = MsdProstate(root=tmp_path, modality=1).load("test")[0]
    assert not np.allclose(t2.image.numpy(), adc.image.numpy())
    with pytest.raises(DataError, match="modality 2 not in 0..1"):
        MsdProstate(root=tmp_path, modality=2).load("test")[0]


def test_corrupt_volume_is_named(tmp_path):
    folder = _task(tmp_path, "Task09_Spleen", "spleen", 3)
    bad = folder / "imagesTr" / "spleen_1.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    problems = [str(p) for p in MsdSpleen(root=tmp_path).check()]
    assert len(problems) == 1 and problems[0].startswith(f"{bad}: unreadable NIfTI volume")
    data = MsdSpleen(root=tmp_path)
    split = next(s for s in data.splits if any(i.startswith("spleen_1") for i in data.split_ids(s)))
    with pytest.raises(DataError, match="spleen_1.nii.gz: unreadable NIfTI volume"):
        verify_samples(data.load(split))


def test_normalise_slice_percentiles_and_ct_floor():
    values = np.arange(1000, dtype=np.float32).reshape(25, 40) - 500
    out = normalise_slice(values, (0.5, 99.5), None)
    assert out.min() == 0.0 and out.max() == 1.0 and out.dtype == np.float32
    floored = normalise_slice(values - 1000, (0.5, 99.5), -256.0)
    assert (floored == 0).mean() > 0.5
