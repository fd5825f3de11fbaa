import pytest
import torch

from bench.downstream import SEGMENTERS
from bench.downstream.trainer import SegTrainConfig, predict, seg_loss, train_segmenter
from bench.downstream.unet import UNet, attention_unet


@pytest.mark.parametrize("name", ["unet", "attention-unet"])
def test_shapes(name):
    model = SEGMENTERS.get(name)(in_channels=3, base=4, depth=2)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.rand(1, 3, 18, 18))


def test_attention_gates_present_only_in_attention_unet():
    assert UNet(base=4, depth=2).gates is None
    assert len(attention_unet(base=4, depth=2).gates) == 2


def test_loss_kinds():
    logits = torch.full((1, 1, 4, 4), 10.0)
    target = torch.ones(1, 1, 4, 4)
    assert seg_loss(logits, target, "dice") < 1e-3
    assert seg_loss(logits, target, "bce") < 1e-3
    with pytest.raises(ValueError, match="unknown loss"):
        seg_loss(logits, target, "focal")


def test_trainer_learns_a_simple_rule_and_restores_best_epoch():
    """Foreground = bright pixels: a U-Net learns it in a few epochs; early stopping keeps the best epoch."""
    torch.manual_seed(0)
    images = torch.rand(48, 3, 16, 16) * 0.4
    masks = torch.zeros(48, 16, 16, dtype=torch.bool)
    for i in range(48):
        r, c = torch.randint(0, 9, (2,)).tolist()
        masks[i, r:r + 7, c:c + 7] = True
    images = images + masks[:, None].float() * 0.6
    torch.manual_seed(0)
    model = UNet(3, base=4, depth=2)
    result = train_segmenter(model, images[:32], masks[:32], images[32:], masks[32:],
                             SegTrainConfig(lr=1e-2, batch_size=8, max_epochs=12, patience=3), seed=0)
    assert result.best_val_dice > 0.8
    assert result.best_val_dice == max(h["val_dice"] for h in result.history)
    from bench.metrics.segmentation import dice_iou

    restored = dice_iou(predict(result.model, images[32:]), masks[32:])[0].mean()
    assert abs(float(restored) - result.best_val_dice) < 1e-6
