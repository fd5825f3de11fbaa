"""Image-quality metrics: Frechet distance (any extractor), KID, SSIM, MS-SSIM, PSNR, LPIPS.

Keys name their protocol (STYLE 6.7): ``fd[<extractor>]`` (``fd[inception-v3]`` is FID
proper, ``fd[mini-clip]`` is never called FID), ``kid[<extractor>]``,
``ssim[range=1]`` / ``ssim[range=255]`` (chapter 6 section 5.3: the reference code very
probably ran ``pytorch_msssim.ssim`` on [0, 1] images with its default
``data_range=255``; we report both), ``ms_ssim``, ``psnr``, ``lpips_diversity``,
``mae`` / ``mse`` / ``rmse`` (`pixel_errors`, per pair; DiffBoost Table I).

All images are float tensors (N, C, H, W) in [0, 1] unless stated.
Wrapped libraries: pytorch-msssim (SSIM, MS-SSIM), torchmetrics (PSNR, MAE, MSE, KID's
polynomial MMD), lpips (LPIPS), scipy (matrix square root). The Frechet distance
is written here on float64 sufficient statistics and tested against clean-fid's
``frechet_distance`` and torchmetrics' FID.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.metrics.base import BenchMetric

if TYPE_CHECKING:
    from torch import Tensor, nn

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- Frechet distance
class GaussianStats:
    """Sufficient statistics of a feature set: count, sum and sum of outer products (float64).

    ``mean = s / n`` and ``cov = (S - n mean mean^T) / (n - 1)`` (unbiased, as
    ``np.cov``). Constant memory in the number of images; merging two sets is adding.
    Optionally keeps the raw features (``keep_features=True``) for KID.
    """

    def __init__(self, dim: int | None = None, keep_features: bool = False) -> None:
        self.n = 0
        self.sum: np.ndarray | None = None if dim is None else np.zeros(dim)
        self.outer: np.ndarray | None = None if dim is None else np.zeros((dim, dim))
        self.keep_features = keep_features
        self._features: list[np.ndarray] = []

    def update(self, features: Any) -> None:
        """Add features of shape (N, d)."""
        f = features.detach().cpu().double().numpy() if hasattr(features, "detach") else np.asarray(features, np.float64)
        if f.ndim != 2:
            raise ValueError(f"features must be (N, d), got shape {f.shape}; flatten or pool the extractor output")
        if self.sum is None:
            self.sum, self.outer = np.zeros(f.shape[1]), np.zeros((f.shape[1], f.shape[1]))
        if f.shape[1] != self.sum.shape[0]:
            raise ValueError(f"feature dimension changed from {self.sum.shape[0]} to {f.shape[1]}")
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f
        if self.keep_features:
            self._features.append(f.astype(np.float32))

    @property
    def features(self) -> np.ndarray:
        """Raw features (N, d) float32; only when built with ``keep_features=True``."""
        if not self.keep_features:
            raise RuntimeError("these statistics were built without keep_features=True")
        return np.concatenate(self._features) if self._features else np.zeros((0, 0), np.float32)

    def mean(self) -> np.ndarray:
        if self.n < 1 or self.sum is None:
            raise RuntimeError("no features seen")
        return self.sum / self.n

    def cov(self) -> np.ndarray:
        if self.n < 2 or self.sum is None or self.outer is None:
            raise RuntimeError(f"a covariance needs at least 2 samples, got {self.n}")
        mu = self.mean()
        return (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)

    def save(self, path: str | Path) -> None:
        """Write ``n, sum, outer`` (and ``features``) to a ``.npz`` file (no pickle)."""
        if self.sum is None:
            raise RuntimeError("cannot save empty statistics")
        arrays: dict[str, np.ndarray] = {"n": np.array(self.n), "sum": self.sum, "outer": self.outer}  # type: ignore[dict-item]
        if self.keep_features:
            arrays["features"] = self.features
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        """Read statistics written by `save`."""
        with np.load(path, allow_pickle=False) as data:
            stats = cls(keep_features="features" in data.files)
            stats.n = int(data["n"])
            stats.sum = data["sum"].astype(np.float64)
            stats.outer = data["outer"].astype(np.float64)
            if stats.keep_features:
                stats._features = [data["features"]]
        return stats


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance of two Gaussians (Heusel et al. 2017; thesis Eq. 4.12).

    ``d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})``. If ``sqrtm`` is not finite,
    ``eps`` is added to both diagonals (logged); an imaginary part above 1e-3 raises.

    Args:
        mu1, mu2: means, shape (d,).
        sigma1, sigma2: covariances, shape (d, d).

    Returns:
        The distance (>= 0 up to round-off), float.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        logger.warning("Frechet distance: singular covariance product; adding %g to the diagonals", eps)
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Frechet distance: imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def extract_features(extractor: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Run ``extractor`` over ``images`` (N, C, H, W) in batches without gradients; returns (N, d) float."""
    import torch

    was_training = extractor.training
    extractor.eval()
    device = next((p.device for p in extractor.parameters()), torch.device("cpu"))
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            feats = extractor(images[start : start + batch_size].to(device))
            if feats.ndim != 2:
                raise ValueError(f"extractor must return (N, d) features, got shape {tuple(feats.shape)}")
            out.append(feats.float().cpu())
    extractor.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


class FrechetDistance(BenchMetric):
    """Frechet distance between real and generated images in any extractor's feature space.

    ``update(images, real)`` takes float images (N, C, H, W) in [0, 1] (whatever the
    extractor expects); ``compute()`` returns ``{"fd[<extractor_name>]": value}``.
    Reference statistics can be set from the cache with `set_reference` and are
    kept across `reset` (``keep_reference=True``), as torchmetrics'
    ``reset_real_features=False``.

    Args:
        extractor: any ``nn.Module`` mapping images to (N, d) features (see
            `bench.metrics.extractors`; mini-CLIP's image tower fits too).
        extractor_name: label used in the key, e.g. ``"inception-v3"``, ``"dinov2-base"``.
        batch_size: extraction batch size.
    """

    higher_is_better: ClassVar[bool | None] = False
    display_name: ClassVar[str] = "FD"
    lower_bound: ClassVar[float | None] = 0.0
    upper_bound: ClassVar[float | None] = None

    def __init__(self, extractor: nn.Module, extractor_name: str, batch_size: int = 64, keep_reference: bool = True) -> None:
        if not extractor_name:
            raise ValueError("extractor_name is required: every FD is labelled by its extractor (fd[<name>])")
        self.extractor = extractor
        self.extractor_name = extractor_name
        self.batch_size = batch_size
        self.keep_reference = keep_reference
        self.real = GaussianStats()
        super().__init__()

    @property
    def key(self) -> str:
        return f"fd[{self.extractor_name}]"

    def reset(self) -> None:
        if not getattr(self, "keep_reference", False):
            self.real = GaussianStats()
        self.fake = GaussianStats()

    def set_reference(self, stats: GaussianStats) -> None:
        """Use precomputed real-image statistics (e.g. from `bench.metrics.refstats`)."""
        self.real = stats

    def update(self, images: Tensor, real: bool) -> None:  # type: ignore[override]
        feats = extract_features(self.extractor, images, self.batch_size)
        (self.real if real else self.fake).update(feats)

    def compute(self) -> dict[str, float]:
        for name, s in (("real", self.real), ("generated", self.fake)):
            if s.n < 2:
                raise RuntimeError(f"FD needs at least 2 {name} images, got {s.n}")
        value = frechet_distance(self.real.mean(), self.real.cov(), self.fake.mean(), self.fake.cov())
        return {self.key: value}


def save_fd_stats(path: str | Path, real: GaussianStats, generated: GaussianStats) -> Path:
    """Both sets' sufficient statistics in one ``.npz`` (no pickle): what an FD recomputes from."""
    arrays = {}
    for name, stats in (("real", real), ("generated", generated)):
        if stats.sum is None or stats.outer is None:
            raise RuntimeError(f"no {name} features to save")
        arrays.update({f"{name}_n": np.array(stats.n), f"{name}_sum": stats.sum, f"{name}_outer": stats.outer})
    path = Path(path)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def fd_from_stats_file(path: str | Path) -> float:
    """The Frechet distance that `save_fd_stats`'s file gives back."""
    sets = {}
    with np.load(path, allow_pickle=False) as data:
        for name in ("real", "generated"):
            stats = GaussianStats()
            stats.n = int(data[f"{name}_n"])
            stats.sum, stats.outer = data[f"{name}_sum"].astype(np.float64), data[f"{name}_outer"].astype(np.float64)
            sets[name] = stats
    return frechet_distance(sets["real"].mean(), sets["real"].cov(), sets["generated"].mean(), sets["generated"].cov())


# --------------------------------------------------------------------------- KID
def kernel_distance(
    real_features: Any,
    fake_features: Any,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    degree: int = 3,
    coef: float = 1.0,
) -> dict[str, float]:
    """Kernel (Inception) distance: unbiased polynomial-kernel MMD^2 over random subsets.

    Kernel ``k(x, y) = (x.y / d + 1)^3`` (Binkowski et al. 2018), computed by
    torchmetrics' ``poly_mmd`` in float64. Subsets of ``m = min(subset_size, N_real,
    N_fake)`` are drawn without replacement by ``np.random.RandomState(seed)``,
    generated first then real, per subset (clean-fid's order, so the same seed gives
    clean-fid's value).

    Args:
        real_features: (N_r, d).  fake_features: (N_f, d).

    Returns:
        ``{"mean": KID, "std": std over subsets}`` (KID can be slightly negative).
    """
    import torch
    from torchmetrics.image.kid import poly_mmd

    real = torch.as_tensor(np.asarray(real_features, np.float64))
    fake = torch.as_tensor(np.asarray(fake_features, np.float64))
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {real.shape[0]} real and {fake.shape[0]} generated")
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(num_subsets):
        idx_fake = rng.choice(fake.shape[0], m, replace=False)
        idx_real = rng.choice(real.shape[0], m, replace=False)
        values.append(float(poly_mmd(real[idx_real], fake[idx_fake], degree=degree, coef=coef)))
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


class KernelDistance(BenchMetric):
    """KID between real and generated images in any extractor's feature space (see `kernel_distance`).

    ``update(images, real)`` as `FrechetDistance`; raw features are kept (KID needs
    them). ``compute()`` returns ``{"kid[<extractor_name>]": mean over subsets}``.
    """

    higher_is_better: ClassVar[bool | None] = False
    display_name: ClassVar[str] = "KID"
    lower_bound: ClassVar[float | None] = None
    upper_bound: ClassVar[float | None] = None

    def __init__(self, extractor: nn.Module, extractor_name: str, num_subsets: int = 100, subset_size: int = 1000,
                 seed: int = 0, batch_size: int = 64) -> None:
        if not extractor_name:
            raise ValueError("extractor_name is required: every KID is labelled by its extractor (kid[<name>])")
        self.extractor, self.extractor_name = extractor, extractor_name
        self.num_subsets, self.subset_size, self.seed, self.batch_size = num_subsets, subset_size, seed, batch_size
        self.real = GaussianStats(keep_features=True)
        super().__init__()

    @property
    def key(self) -> str:
        return f"kid[{self.extractor_name}]"

    def reset(self) -> None:
        self.fake = GaussianStats(keep_features=True)

    def set_reference(self, stats: GaussianStats) -> None:
        """Use cached real statistics built with ``keep_features=True``."""
        if not stats.keep_features:
            raise ValueError("KID needs reference statistics cached with keep_features=True")
        self.real = stats

    def update(self, images: Tensor, real: bool) -> None:  # type: ignore[override]
        (self.real if real else self.fake).update(extract_features(self.extractor, images, self.batch_size))

    def compute(self) -> dict[str, float]:
        res = kernel_distance(self.real.features, self.fake.features, self.num_subsets, self.subset_size, self.seed)
        return {self.key: res["mean"]}


# --------------------------------------------------------------------------- SSIM / MS-SSIM / PSNR
def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"need paired images of equal shape (N, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")


def ssim(x: Tensor, y: Tensor, data_range: float, win_size: int = 11, win_sigma: float = 1.5) -> Tensor:
    """Per-pair SSIM (Wang et al. 2004) via ``pytorch_msssim.ssim``; Gaussian window, K=(0.01, 0.03).

    Args:
        x, y: paired images (N, C, H, W); values in [0, data_range] for the correct SSIM.
        data_range: required, never defaulted: ``1.0`` for [0, 1] images is correct;
            ``255.0`` on [0, 1] images reproduces chapter 6's reference code.

    Returns:
        (N,) float SSIM per pair (mean over channels and valid windows).
    """
    from pytorch_msssim import ssim as _ssim

    _check_pair(x, y)
    return _ssim(x, y, data_range=data_range, size_average=False, win_size=win_size, win_sigma=win_sigma)


def ms_ssim(x: Tensor, y: Tensor, data_range: float, win_size: int = 11, win_sigma: float = 1.5) -> Tensor:
    """Per-pair 5-scale MS-SSIM via ``pytorch_msssim.ms_ssim`` (default betas); side > 160 px with win 11.

    Smaller images need a smaller window (side > (win_size - 1) * 16); report them
    under `ms_ssim_key` (``ms_ssim[win=3]``), never as plain ``ms_ssim``.

    Returns:
        (N,) float MS-SSIM per pair.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    _check_pair(x, y)
    min_side = (win_size - 1) * 2**4
    if min(x.shape[-2:]) <= min_side:
        raise ValueError(f"MS-SSIM with win_size={win_size} needs images larger than {min_side} px, got {tuple(x.shape[-2:])}")
    return _ms_ssim(x, y, data_range=data_range, size_average=False, win_size=win_size, win_sigma=win_sigma)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-pair PSNR ``10 log10(data_range^2 / MSE)`` via torchmetrics (inf for identical pairs).

    Returns:
        (N,) float64 PSNR in dB.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check_pair(x, y)
    return peak_signal_noise_ratio(x.double(), y.double(), data_range=data_range, reduction="none", dim=(1, 2, 3))


def pixel_errors(x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Per-pair MAE, MSE (torchmetrics, float64, over all channels and pixels) and RMSE = sqrt(MSE) of each pair.

    DiffBoost's Table I reports them on [0, 1] images as mean and std over images, so RMSE is per image, then
    averaged (not the root of the mean MSE).

    Returns:
        ``{"mae": (N,), "mse": (N,), "rmse": (N,)}`` float64.
    """
    import torch
    from torchmetrics.functional import mean_absolute_error, mean_squared_error

    _check_pair(x, y)
    mae = torch.stack([mean_absolute_error(a.double(), b.double()) for a, b in zip(x, y)])
    mse = torch.stack([mean_squared_error(a.double(), b.double()) for a, b in zip(x, y)])
    return {"mae": mae, "mse": mse, "rmse": mse.sqrt()}


def ms_ssim_key(win_size: int = 11) -> str:
    """``ms_ssim`` for the standard 11-px window (Table 4.1, images > 160 px); ``ms_ssim[win=K]`` otherwise
    (small images, e.g. the 64-px mini worlds need ``win_size <= 3``)."""
    return "ms_ssim" if win_size == 11 else f"ms_ssim[win={win_size}]"


def ssim_key(data_range: float) -> str:
    """Metric key of SSIM at ``data_range``: ``ssim[range=1]``, ``ssim[range=255]``."""
    return f"ssim[range={data_range:g}]"


class PairedImageQuality(BenchMetric):
    """Mean SSIM (at every requested data range), PSNR and optionally MS-SSIM over paired images.

    ``update(generated, real)`` takes paired images (N, C, H, W) in [0, 1];
    ``compute()`` returns e.g. ``{"ssim[range=1]": ., "ssim[range=255]": ., "psnr": .}``.
    ``per_pair()`` gives the per-pair values.
    """

    higher_is_better: ClassVar[bool | None] = True
    display_name: ClassVar[str] = "SSIM / PSNR"
    lower_bound: ClassVar[float | None] = None
    upper_bound: ClassVar[float | None] = None

    def __init__(self, ssim_ranges: tuple[float, ...] = (1.0, 255.0), with_psnr: bool = True, with_ms_ssim: bool = False,
                 ms_ssim_win: int = 11) -> None:
        self.ssim_ranges = ssim_ranges
        self.with_psnr = with_psnr
        self.with_ms_ssim = with_ms_ssim
        self.ms_ssim_win = ms_ssim_win
        super().__init__()

    def reset(self) -> None:
        self._values: dict[str, list[np.ndarray]] = {}

    def update(self, generated: Tensor, real: Tensor) -> None:  # type: ignore[override]
        batch: dict[str, Tensor] = {ssim_key(r): ssim(generated, real, data_range=r) for r in self.ssim_ranges}
        if self.with_psnr:
            batch["psnr"] = psnr(generated, real, data_range=1.0)
        if self.with_ms_ssim:
            batch[ms_ssim_key(self.ms_ssim_win)] = ms_ssim(generated, real, data_range=1.0, win_size=self.ms_ssim_win)
        for k, v in batch.items():
            self._values.setdefault(k, []).append(v.detach().double().cpu().numpy())

    def per_pair(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self._values.items()}

    def compute(self) -> dict[str, float]:
        if not self._values:
            raise RuntimeError("PairedImageQuality.compute() called before any update()")
        return {k: float(np.mean(v)) for k, v in self.per_pair().items()}


# --------------------------------------------------------------------------- LPIPS
def masks_to_rgb(masks: Tensor) -> Tensor:
    """Binary masks (N, H, W) or (N, 1, H, W) -> float (N, 3, H, W) in {0, 1}, for mask LPIPS (Table 4.7)."""
    m = masks.float()
    if m.ndim == 3:
        m = m.unsqueeze(1)
    if m.ndim != 4 or m.shape[1] != 1:
        raise ValueError(f"masks must be (N, H, W) or (N, 1, H, W), got {tuple(masks.shape)}")
    return m.expand(-1, 3, -1, -1).contiguous()


def lpips_pairs(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 32) -> Tensor:
    """Per-pair LPIPS distance of images in [0, 1] (scaled to [-1, 1] for the lpips package).

    Args:
        model: an ``lpips.LPIPS`` module (see `bench.metrics.extractors.load_lpips`).
        x, y: paired images (N, 3, H, W) in [0, 1].

    Returns:
        (N,) float distances.
    """
    import torch

    _check_pair(x, y)
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            out.append(model(x[s : s + batch_size] * 2 - 1, y[s : s + batch_size] * 2 - 1).flatten().cpu())
    return torch.cat(out)


def random_distinct_pairs(n: int, n_pairs: int, seed: int) -> np.ndarray:
    """``n_pairs`` seeded random pairs (i, j), i != j, of indices < n; all unordered pairs if fewer exist.

    Returns:
        int64 array (P, 2).
    """
    if n < 2:
        raise ValueError(f"need at least 2 images for pairs, got {n}")
    total = n * (n - 1) // 2
    if n_pairs >= total:
        i, j = np.triu_indices(n, k=1)
        return np.stack([i, j], 1).astype(np.int64)
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, n_pairs)
    second = (first + rng.integers(1, n, n_pairs)) % n  # uniform over j != i
    return np.stack([first, second], 1).astype(np.int64)


def lpips_diversity(model: nn.Module, images: Tensor, n_pairs: int = 1000, seed: int = 0, batch_size: int = 32) -> float:
    """Mean LPIPS over seeded random distinct pairs within one set (Table 4.1 diversity).

    For masks (Table 4.7 / 5.5) pass ``masks_to_rgb(masks)``.

    Args:
        images: (N, 3, H, W) in [0, 1].
        n_pairs: number of random pairs (all pairs if N(N-1)/2 is smaller).
        seed: pair-sampling seed.
    """
    _, values = lpips_pair_scores(model, images, n_pairs, seed, batch_size)
    return float(values.double().mean())


def lpips_pair_scores(model: nn.Module, images: Tensor, n_pairs: int = 1000, seed: int = 0,
                      batch_size: int = 32) -> tuple[np.ndarray, Tensor]:
    """The pairs `lpips_diversity` draws, (P, 2) indices, and each pair's LPIPS distance (P,): the per-pair scores
    a record stores so its diversity can be recomputed."""
    pairs = random_distinct_pairs(images.shape[0], n_pairs, seed)
    return pairs, lpips_pairs(model, images[pairs[:, 0]], images[pairs[:, 1]], batch_size)
