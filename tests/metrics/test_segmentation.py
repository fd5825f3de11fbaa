import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, jaccard_score

from bench.metrics.segmentation import DiceIoU, dice_iou, subset_below


def test_dice_iou_matches_sklearn_per_image():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(6, 17, 13, generator=g) > 0.6
    target = torch.rand(6, 17, 13, generator=g) > 0.5
    dice, iou = dice_iou(pred, target)
    assert dice.dtype == torch.float64 and dice.shape == (6,)
    for i in range(6):
        t, p = target[i].flatten().numpy(), pred[i].flatten().numpy()
        assert dice[i].item() == pytest.approx(f1_score(t, p), abs=1e-12)
        assert iou[i].item() == pytest.approx(jaccard_score(t, p), abs=1e-12)


def test_hand_computed_and_single_image():
    p = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    t = torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    dice, iou = dice_iou(p, t)  # inter 1, |P| 2, |T| 2, union 3
    assert dice.tolist() == [pytest.approx(0.5)]
    assert iou.tolist() == [pytest.approx(1 / 3)]


def test_empty_cases():
    empty = torch.zeros(2, 4, 4, dtype=torch.bool)
    full = torch.ones(2, 4, 4, dtype=torch.bool)
    assert dice_iou(empty, empty)[0].tolist() == [1.0, 1.0]
    assert dice_iou(empty, empty)[1].tolist() == [1.0, 1.0]
    assert dice_iou(empty, full)[0].tolist() == [0.0, 0.0]
    assert dice_iou(full, empty)[1].tolist() == [0.0, 0.0]
    assert dice_iou(full, full)[0].tolist() == [1.0, 1.0]


def test_input_validation():
    with pytest.raises(TypeError, match="threshold it first"):
        dice_iou(torch.rand(2, 4, 4), torch.rand(2, 4, 4) > 0.5)
    with pytest.raises(ValueError, match="shape"):
        dice_iou(torch.zeros(2, 4, 4, dtype=torch.bool), torch.zeros(2, 4, 5, dtype=torch.bool))
    d, _ = dice_iou(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))  # 0/1 integers accepted
    assert d.item() == 1.0


def test_subset_below_is_strict():
    scores = torch.tensor([0.59, 0.6, 0.61, 0.1], dtype=torch.float64)
    idx = subset_below(scores, 0.6)
    assert idx.tolist() == [0, 3] and idx.dtype == np.int64
    assert subset_below([0.9, 0.95], 0.8).size == 0


def test_accumulating_metric_equals_function():
    g = torch.Generator().manual_seed(1)
    pred = torch.rand(5, 8, 8, generator=g) > 0.5
    target = torch.rand(5, 8, 8, generator=g) > 0.5
    m = DiceIoU()
    m.update(pred[:2], target[:2])
    m.update(pred[2:], target[2:])
    dice, iou = dice_iou(pred, target)
    assert m.compute() == {"dice": pytest.approx(dice.mean().item()), "iou": pytest.approx(iou.mean().item())}
    assert np.allclose(m.per_image()["iou"], iou.numpy())
    m.reset()
    with pytest.raises(RuntimeError):
        m.compute()
