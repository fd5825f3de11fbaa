"""HED edges (Xie and Tu, ICCV 2015) as DiffBoost's code computes them (paper profile, spec B.4-B.5; shared by
DiffBoost and the radimagenet-synthesis task, so the task's edge maps are the method's).

DiffBoost vendors ControlNet v1.0's ``annotator/hed``: sniklaus' PyTorch port of HED with the BSDS500 weights
(``network-bsds500.pth``). The network: VGG-16's five convolution stages, a 1x1 score convolution after each,
the five score maps upsampled to the input size, a 1x1 combination and a sigmoid; the input is the RGB image in
0-255, channels reversed to BGR, minus the Caffe means (104.007, 116.669, 122.679). The weight file's keys are
``moduleVggOne.0.weight`` ... ``moduleCombine.0.bias`` (``module`` -> ``net`` in later versions: both are read).
Nothing is downloaded: ``hed_weights`` names the local file.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MEANS_BGR = (104.00698793, 116.66876762, 122.67891434)


def _stage(cin: int, cout: int, convs: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(2, 2)] if pool else []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, 1, 1), nn.ReLU(inplace=False)]
    return nn.Sequential(*layers)


class HED(nn.Module):
    """sniklaus' HED network; ``forward`` takes (N, 3, H, W) RGB in [0, 1] and returns edges (N, 1, H, W) in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.netVggOne = _stage(3, 64, 2, False)
        self.netVggTwo = _stage(64, 128, 2, True)
        self.netVggThr = _stage(128, 256, 3, True)
        self.netVggFou = _stage(256, 512, 3, True)
        self.netVggFiv = _stage(512, 512, 3, True)
        self.netScoreOne = nn.Conv2d(64, 1, 1)
        self.netScoreTwo = nn.Conv2d(128, 1, 1)
        self.netScoreThr = nn.Conv2d(256, 1, 1)
        self.netScoreFou = nn.Conv2d(512, 1, 1)
        self.netScoreFiv = nn.Conv2d(512, 1, 1)
        self.netCombine = nn.Sequential(nn.Conv2d(5, 1, 1), nn.Sigmoid())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flip(1) * 255.0 - torch.tensor(MEANS_BGR, device=images.device, dtype=images.dtype)[None, :, None, None]
        feats = []
        for stage in (self.netVggOne, self.netVggTwo, self.netVggThr, self.netVggFou, self.netVggFiv):
            x = stage(x)
            feats.append(x)
        scores = [head(f) for head, f in zip((self.netScoreOne, self.netScoreTwo, self.netScoreThr, self.netScoreFou,
                                              self.netScoreFiv), feats)]
        size = images.shape[-2:]
        scores = [F.interpolate(s, size=size, mode="bilinear", align_corners=False) for s in scores]
        return self.netCombine(torch.cat(scores, 1))


def load_hed(path: str | Path) -> HED:
    """HED with the BSDS500 weights from ``path`` (``network-bsds500.pth``), eval mode, no gradients.

    Raises:
        FileNotFoundError: the file is missing (one line naming it).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"HED weights not found: {path} (sniklaus' network-bsds500.pth, the file ControlNet's "
                                "annotator/hed downloads; put it there or use edge_detector=canny)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.replace("module", "net", 1) if k.startswith("module") else k: v for k, v in state.items()}
    model = HED()
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)
