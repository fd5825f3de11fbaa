"""Registry of the standard pretrained feature extractors, loaded from local files only.

Nothing is downloaded. Each extractor is found in a weights directory: the
``weights_dir`` argument (from config) or else the ``BENCH_WEIGHTS`` environment
variable. A missing file raises `MissingWeightsError` with one line saying what to
put where. Checkpoints are read with ``torch.load(weights_only=True)`` or
safetensors; nothing is unpickled.

| name | expected under the weights dir | features |
|---|---|---|
| ``inception-v3`` | ``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's FID Inception, as torchmetrics' FID) | 2048-d pool3 |
| ``lpips-alex`` | ``alexnet-owt-7be5be79.pth`` (torchvision AlexNet; the LPIPS linear heads ship in the lpips package) | LPIPS module |
| ``clip-vit-l-14`` | folder ``clip-vit-large-patch14/`` (``save_pretrained`` of openai/clip-vit-large-patch14) | image + text towers |
| ``clip-vit-b-32`` | folder ``clip-vit-base-patch32/`` | image + text towers |
| ``dinov2-base`` | folder ``dinov2-base/`` (facebook/dinov2-base) | 768-d CLS |
| ``xrv-densenet121-res224-all`` | ``xrv-densenet121-res224-all.safetensors`` or ``.pt`` *state dict* | 1024-d ``features2`` |

Any other ``nn.Module`` that maps float images (N, C, H, W) in [0, 1] to (N, d)
features works with `bench.metrics.image.FrechetDistance` and the embedding
metrics: register it with `register_extractor` (e.g. the mini-CLIP image tower),
and always report its name in the metric key (``fd[mini-clip]``).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "BENCH_WEIGHTS"

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
CLIP_L14_DIR = "clip-vit-large-patch14"
CLIP_B32_DIR = "clip-vit-base-patch32"
DINOV2_DIR = "dinov2-base"
XRV_STEM = "xrv-densenet121-res224-all"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MissingWeightsError(FileNotFoundError):
    """A pretrained file is absent; the message is one line saying what to put where."""


def resolve_weights_dir(weights_dir: str | Path | None = None) -> Path:
    """The weights directory: ``weights_dir`` if given, else ``$BENCH_WEIGHTS``."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    env = os.environ.get(WEIGHTS_ENV)
    if not env:
        raise MissingWeightsError(f"no weights directory: pass weights_dir (config) or set {WEIGHTS_ENV}=<folder holding the pretrained files>")
    return Path(env).expanduser()


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise MissingWeightsError(f"missing {what}: put it at {path} (weights dir from config or ${WEIGHTS_ENV}); nothing is downloaded")
    return path


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a ``.pt/.pth`` with ``torch.load(weights_only=True)``."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickled module, not a state dict
        from bench.errors import UnsafeWeightsError

        raise UnsafeWeightsError(
            f"{path} is not a plain state dict loadable with weights_only=True ({type(exc).__name__}); "
            "convert it once on a trusted machine: torch.save(torch.load(f, weights_only=False).state_dict(), out)"
        ) from None
    if not isinstance(state, dict):
        from bench.errors import UnsafeWeightsError

        raise UnsafeWeightsError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return state


@contextmanager
def _weights_only_loads():
    """Force ``torch.load(weights_only=True)`` inside third-party constructors that pass False."""
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


def _normalizer(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[Tensor], Tensor]:
    import torch

    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return lambda x: (x - m.to(x.device)) / s.to(x.device)


def _to_rgb(x: Tensor) -> Tensor:
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(x.shape)}")
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    return x


def resize_center_crop(x: Tensor, size: int, crop: int | None = None) -> Tensor:
    """Resize the shorter side to ``size`` (bicubic, antialiased) then center-crop ``crop`` (default ``size``)."""
    import torch.nn.functional as F

    crop = crop or size
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(crop, round(h * scale)), max(crop, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    top, left = (nh - crop) // 2, (nw - crop) // 2
    return x[..., top : top + crop, left : left + crop].clamp(0, 1)


# --------------------------------------------------------------------------- Inception (FID)
def _inception_module():
    import torch
    from torch import nn

    class InceptionV3FID(nn.Module):
        """torch-fidelity's FID Inception-v3 (2048-d pool3), fed as torchmetrics' FID does.

        Input: float (N, 3, H, W) in [0, 1]; quantised with ``(x * 255).byte()``
        (torchmetrics ``normalize=True``), resized to 299 inside the network.
        """

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net
            self.num_features = 2048

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = _to_rgb(x)
            feats = self.net((x.clamp(0, 1) * 255).byte())
            return (feats[0] if isinstance(feats, tuple) else feats).reshape(x.shape[0], -1)

    return InceptionV3FID


def load_inception_v3(weights_dir: str | Path | None = None, path: str | Path | None = None) -> nn.Module:
    """FID Inception-v3 from ``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's weights).

    Args:
        weights_dir: folder holding the file (default ``$BENCH_WEIGHTS``).
        path: explicit file path (overrides ``weights_dir``).
    """
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as exc:  # pragma: no cover
        raise ModuleNotFoundError("FID Inception needs torch-fidelity: pip install torch-fidelity") from exc
    file = Path(path) if path else resolve_weights_dir(weights_dir) / INCEPTION_FILE
    _require(file, "FID Inception-v3 weights (torch-fidelity's weights-inception-2015-12-05-6726825d.pth)")
    load_state_dict(file)  # fails early and clearly if the file is not a plain state dict
    with _weights_only_loads():
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(file))
    return _inception_module()(net).eval()


# --------------------------------------------------------------------------- LPIPS
def load_lpips(weights_dir: str | Path | None = None, path: str | Path | None = None, net: str = "alex") -> nn.Module:
    """LPIPS v0.1 with an AlexNet trunk loaded from torchvision's ``alexnet-owt-7be5be79.pth``.

    The calibrated linear heads ship inside the ``lpips`` package. Input pairs in
    [-1, 1] (`bench.metrics.image.lpips_pairs` rescales [0, 1] images).
    """
    import lpips

    if net != "alex":
        raise ValueError(f"only the AlexNet trunk (net='alex', the thesis' choice) is supported, got {net!r}")
    file = Path(path) if path else resolve_weights_dir(weights_dir) / ALEXNET_FILE
    _require(file, "torchvision AlexNet weights for the LPIPS trunk (alexnet-owt-7be5be79.pth)")
    state = load_state_dict(file)
    import warnings

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` flag
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pnet_rand=True, pretrained=True, verbose=False)
    slices = {}
    for name, module in model.net.named_children():
        for idx in module._modules:
            slices[int(idx)] = name
    trunk = {}
    for key, value in state.items():
        if key.startswith("features."):
            _, idx, param = key.split(".", 2)
            trunk[f"{slices[int(idx)]}.{idx}.{param}"] = value
    model.net.load_state_dict(trunk, strict=True)
    return model.eval()


# --------------------------------------------------------------------------- transformers towers
def load_clip(folder: str | Path | None = None, weights_dir: str | Path | None = None, variant: str = "clip-vit-l-14") -> dict[str, Any]:
    """CLIP image and text encoders from a ``save_pretrained`` folder (``local_files_only``).

    Returns:
        ``{"image": nn.Module, "image_projected": nn.Module, "text": callable}``:
        ``image`` maps (N, 3, H, W) in [0, 1] to the un-projected ``pooler_output``
        (ch3 section 3: what the author's CLIP-I used), ``image_projected`` to
        ``image_embeds``; ``text(list[str])`` returns projected ``text_embeds``
        (CLIP-T pairs projected image and text embeddings).
    """
    import torch
    from torch import nn
    from transformers import AutoTokenizer, CLIPModel

    dirs = {"clip-vit-l-14": CLIP_L14_DIR, "clip-vit-b-32": CLIP_B32_DIR}
    if folder is None:
        if variant not in dirs:
            raise ValueError(f"unknown CLIP variant {variant!r}; known: {', '.join(dirs)}")
        folder = resolve_weights_dir(weights_dir) / dirs[variant]
    folder = _require(Path(folder), f"CLIP folder ({variant}, written by save_pretrained)")
    model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    size = model.config.vision_config.image_size
    norm = _normalizer(CLIP_MEAN, CLIP_STD)

    class _Image(nn.Module):
        def __init__(self, projected: bool) -> None:
            super().__init__()
            self.model = model
            self.projected = projected

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pixels = norm(resize_center_crop(_to_rgb(x).float(), size))
            out = self.model.vision_model(pixel_values=pixels)
            pooled = out.pooler_output
            return self.model.visual_projection(pooled) if self.projected else pooled

    def text(prompts: list[str]) -> torch.Tensor:
        tokens = tokenizer(list(prompts), padding=True, truncation=True, max_length=model.config.text_config.max_position_embeddings, return_tensors="pt")
        with torch.no_grad():
            out = model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            return model.text_projection(out.pooler_output)

    return {"image": _Image(False).eval(), "image_projected": _Image(True).eval(), "text": text}


def load_dinov2(folder: str | Path | None = None, weights_dir: str | Path | None = None) -> nn.Module:
    """DINOv2 (facebook/dinov2-base) image encoder from a local folder: (N, 3, H, W) in [0, 1] -> CLS ``pooler_output``.

    Preprocessing: shorter side to 256, center crop 224, ImageNet normalisation (ch3 section 3).
    """
    import torch
    from torch import nn
    from transformers import Dinov2Model

    if folder is None:
        folder = resolve_weights_dir(weights_dir) / DINOV2_DIR
    folder = _require(Path(folder), "DINOv2 folder (facebook/dinov2-base, written by save_pretrained)")
    model = Dinov2Model.from_pretrained(str(folder), local_files_only=True).eval()
    norm = _normalizer(IMAGENET_MEAN, IMAGENET_STD)

    class _Dino(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pixels = norm(resize_center_crop(_to_rgb(x).float(), 256, 224))
            return self.model(pixel_values=pixels).pooler_output

    return _Dino().eval()


def load_xrv_densenet(weights_dir: str | Path | None = None, path: str | Path | None = None) -> nn.Module:
    """torchxrayvision DenseNet-121 ``densenet121-res224-all`` from a local state dict.

    Returns a module with ``forward(x)`` = 1024-d ``features2`` of [0, 1] images
    (grey = channel mean, scaled to [-1024, 1024], resized to 224) and
    ``classify(x)`` = the 18 calibrated outputs (``.targets`` names them), for
    chapter 6's AUROC.
    """
    import torch
    import torch.nn.functional as F
    import torchxrayvision as xrv
    from torch import nn

    if path is None:
        base = resolve_weights_dir(weights_dir)
        candidates = [base / f"{XRV_STEM}.safetensors", base / f"{XRV_STEM}.pt"]
        path = next((c for c in candidates if c.exists()), candidates[0])
    path = _require(Path(path), f"torchxrayvision densenet121-res224-all state dict ({XRV_STEM}.safetensors or .pt)")
    spec = xrv.models.model_urls["densenet121-res224-all"]
    net = xrv.models.DenseNet(weights=None, num_classes=len(spec["labels"]))
    state = {k: v for k, v in load_state_dict(path).items() if k != "op_threshs"}
    net.load_state_dict(state, strict=True)
    net.op_threshs = torch.tensor(spec["op_threshs"])
    net.targets = net.pathologies = list(spec["labels"])

    class _Xrv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net.eval()
            self.targets = list(spec["labels"])
            self.num_features = 1024

        @staticmethod
        def prepare(x: torch.Tensor) -> torch.Tensor:
            grey = x.float().mean(1, keepdim=True) if x.shape[1] != 1 else x.float()
            grey = F.interpolate(grey, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
            return grey * 2048.0 - 1024.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.features2(self.prepare(x))

        def classify(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(self.prepare(x))

    return _Xrv().eval()


# --------------------------------------------------------------------------- registry
_LOADERS: dict[str, Callable[..., Any]] = {
    "inception-v3": load_inception_v3,
    "lpips-alex": load_lpips,
    "clip-vit-l-14": lambda weights_dir=None, **kw: load_clip(weights_dir=weights_dir, variant="clip-vit-l-14", **kw),
    "clip-vit-b-32": lambda weights_dir=None, **kw: load_clip(weights_dir=weights_dir, variant="clip-vit-b-32", **kw),
    "dinov2-base": load_dinov2,
    "xrv-densenet121-res224-all": load_xrv_densenet,
}


def register_extractor(name: str, loader: Callable[..., Any]) -> None:
    """Add an extractor loader (e.g. ``"mini-clip"``); ``loader(weights_dir=None, **kw)`` returns an nn.Module
    mapping [0, 1] images (N, C, H, W) to (N, d) features. Duplicate names are an error."""
    if name in _LOADERS:
        raise ValueError(f"extractor '{name}' is already registered")
    _LOADERS[name] = loader


def available_extractors() -> list[str]:
    return sorted(_LOADERS)


def load_extractor(name: str, weights_dir: str | Path | None = None, **kwargs: Any) -> Any:
    """Load a registered extractor by name from local files (never downloads)."""
    if name not in _LOADERS:
        import difflib

        near = difflib.get_close_matches(name, list(_LOADERS), n=3)
        hint = f" Did you mean: {', '.join(near)}?" if near else ""
        raise KeyError(f"Unknown extractor '{name}'.{hint} Available: {', '.join(available_extractors())}")
    return _LOADERS[name](weights_dir=weights_dir, **kwargs)
