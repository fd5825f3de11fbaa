"""The MedDiff-FT / DiffBoost segmenters (smp, timm, MONAI) and the MONAI losses of the trainer (issue 21)."""
import pytest
import torch

from bench.downstream import SEGMENTERS
from bench.downstream.trainer import SegTrainConfig, seg_loss, train_segmenter


@pytest.mark.parametrize("name", ["upernet", "deeplabv3-plus", "swin-transformer", "nnu-net", "monai-attention-unet"])
def test_shapes_and_size_check(name):
    model = SEGMENTERS.get(name)(in_channels=3, base=8, depth=3)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.rand(1, 3, 36, 36))


def test_standard_widths_at_base_64():
    """base=64 is the standard ResNet-18 encoder (11.2 M parameters in the encoder)."""
    model = SEGMENTERS.get("upernet")(in_channels=3, base=64)
    encoder = sum(p.numel() for p in model.net.encoder.parameters())
    assert 11.0e6 < encoder < 11.4e6


def test_focal_dice_and_dice_ce_losses():
    from monai.losses import DiceLoss, FocalLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    expected = DiceLoss(sigmoid=True)(logits, target) + FocalLoss(gamma=2.0)(logits, target)
    assert seg_loss(logits, target, "focal+dice") == pytest.approx(expected.item(), rel=1e-5)
    assert seg_loss(torch.where(target > 0, 20.0, -20.0), target, "focal+dice") < 1e-3
    assert seg_loss(torch.where(target > 0, 20.0, -20.0), target, "dice+ce") < 1e-3


def test_dynunet_learns_with_focal_dice():
    torch.manual_seed(0)
    images = torch.rand(32, 3, 16, 16) * 0.4
    masks = torch.zeros(32, 16, 16, dtype=torch.bool)
    for i in range(32):
        r, c = torch.randint(0, 9, (2,)).tolist()
        masks[i, r:r + 7, c:c + 7] = True
    images = images + masks[:, None].float() * 0.6
    model = SEGMENTERS.get("nnu-net")(in_channels=3, base=8, depth=2)
    result = train_segmenter(model, images[:24], masks[:24], images[24:], masks[24:],
                             SegTrainConfig(lr=1e-2, batch_size=8, max_epochs=8, patience=8, loss="focal+dice"), seed=0)
    assert result.best_val_dice > 0.7
