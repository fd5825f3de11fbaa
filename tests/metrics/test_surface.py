"""HD95 / ASSD (bench.metrics.surface) against medpy and MONAI on shared inputs (issue 21)."""
import math

import numpy as np
import pytest
import torch

from bench.metrics.surface import batch_hd95_assd, hd95_assd


def _pairs(n=6, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        a = np.zeros((48, 40), bool)
        b = np.zeros((48, 40), bool)
        a[rng.integers(0, 12):rng.integers(20, 48), rng.integers(0, 10):rng.integers(20, 40)] = True
        b[rng.integers(4, 16):rng.integers(24, 48), rng.integers(2, 14):rng.integers(22, 40)] = True
        b[rng.integers(30, 40):44, 1:5] = True  # a second component makes the two directions differ
        yield a, b


@pytest.mark.parametrize("spacing", [None, (0.7, 1.3)])
def test_medpy_convention_equals_medpy(spacing):
    from medpy.metric.binary import assd, hd95

    for a, b in _pairs():
        ours = hd95_assd(a, b, spacing)
        assert ours[0] == pytest.approx(hd95(a, b, spacing), rel=1e-6)
        assert ours[1] == pytest.approx(assd(a, b, spacing), rel=1e-6)


def test_monai_convention_equals_monai_and_hd95_reductions_differ():
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    differ = 0
    for a, b in _pairs():
        ta, tb = torch.tensor(a)[None, None], torch.tensor(b)[None, None]
        hd, asd = hd95_assd(a, b, (0.7, 1.3), convention="monai")
        assert hd == pytest.approx(compute_hausdorff_distance(ta, tb, percentile=95, spacing=(0.7, 1.3)).item(), rel=1e-5)
        assert asd == pytest.approx(compute_average_surface_distance(ta, tb, symmetric=True,
                                                                     spacing=(0.7, 1.3)).item(), rel=1e-5)
        # ASSD is the same number in both libraries; HD95 reduces the two directions differently
        assert asd == pytest.approx(hd95_assd(a, b, (0.7, 1.3))[1], rel=1e-6)
        differ += abs(hd - hd95_assd(a, b, (0.7, 1.3))[0]) > 1e-6
    assert differ > 0


def test_empty_masks_and_identity():
    full = np.zeros((10, 20), bool)
    full[2:6, 3:9] = True
    assert hd95_assd(full, full) == (0.0, 0.0)
    assert all(math.isnan(v) for v in hd95_assd(np.zeros_like(full), np.zeros_like(full)))
    diag = math.hypot(10 * 2.0, 20 * 0.5)
    assert hd95_assd(full, np.zeros_like(full), spacing=(2.0, 0.5)) == pytest.approx((diag, diag))
    assert all(math.isnan(v) for v in hd95_assd(full, np.zeros_like(full), empty="nan"))
    hd, asd = batch_hd95_assd(np.stack([full, full]), np.stack([full, np.roll(full, 2, axis=1)]))
    assert hd[0] == 0 and hd[1] == pytest.approx(2.0) and asd[1] > 0
    with pytest.raises(ValueError, match="outside"):
        hd95_assd(full * 2, full)
