import numpy as np
import pytest
import torch
from cleanfid.fid import frechet_distance as cleanfid_frechet
from cleanfid.fid import kernel_distance as cleanfid_kernel
from pytorch_msssim import ms_ssim as ref_ms_ssim
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd

from bench.metrics.image import (
    FrechetDistance,
    GaussianStats,
    PairedImageQuality,
    frechet_distance,
    kernel_distance,
    lpips_diversity,
    lpips_pairs,
    masks_to_rgb,
    ms_ssim,
    psnr,
    random_distinct_pairs,
    ssim,
)


class TinyExtractor(torch.nn.Module):
    """A fixed random projection of pooled pixels: (N, 3, H, W) -> (N, 6)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(3 * 4 * 4, 6, generator=g), requires_grad=False)

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) @ self.proj


def test_gaussian_stats_match_numpy():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 5))
    s = GaussianStats()
    s.update(f[:20])
    s.update(torch.from_numpy(f[20:]))
    assert np.allclose(s.mean(), f.mean(0), atol=1e-12)
    assert np.allclose(s.cov(), np.cov(f, rowvar=False), atol=1e-12)


def test_frechet_distance_matches_cleanfid_and_closed_form():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) * 1.3 + 0.4
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(*args) == pytest.approx(cleanfid_frechet(*args), abs=1e-6)
    # closed form for diagonal Gaussians: |mu1-mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2))
    s1, s2 = np.array([1.0, 4.0]), np.array([9.0, 1.0])
    expected = 2.0 + (1 + 9 - 6) + (4 + 1 - 4)
    assert frechet_distance(np.zeros(2), np.diag(s1), np.ones(2), np.diag(s2)) == pytest.approx(expected, abs=1e-9)
    assert frechet_distance(*args[:2], *args[:2]) == pytest.approx(0.0, abs=1e-6)


def test_fd_metric_matches_torchmetrics_fid_with_same_features():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.rand(40, 3, 16, 16, generator=g), torch.rand(30, 3, 16, 16, generator=g) ** 2
    ext = TinyExtractor()
    ours = FrechetDistance(ext, "tiny", batch_size=16)
    ours.update(real, real=True)
    ours.update(fake, real=False)
    value = ours.compute()["fd[tiny]"]
    ref = FrechetInceptionDistance(feature=ext, normalize=True)
    ref.update(real, real=True)
    ref.update(fake, real=False)
    assert value == pytest.approx(float(ref.compute()), rel=1e-4, abs=1e-5)  # torchmetrics sums in float64 too
    # reference kept across reset; generated cleared
    ours.reset()
    assert ours.real.n == 40 and ours.fake.n == 0
    with pytest.raises(RuntimeError, match="at least 2 generated"):
        ours.compute()
    with pytest.raises(ValueError, match="extractor_name"):
        FrechetDistance(ext, "")


def test_kid_matches_cleanfid_and_torchmetrics():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(60, 7)), rng.normal(size=(50, 7)) + 0.3
    # one subset holding every sample (equal set sizes) = the MMD of the full sets
    full = kernel_distance(real[:50], fake, num_subsets=1, subset_size=1000, seed=0)["mean"]
    assert full == pytest.approx(float(poly_mmd(torch.from_numpy(real[:50]), torch.from_numpy(fake))), abs=1e-9)
    assert full == pytest.approx(cleanfid_kernel(real[:50], fake, num_subsets=1, max_subset_size=1000), abs=1e-9)
    np.random.seed(5)
    ref = cleanfid_kernel(real, fake, num_subsets=4, max_subset_size=20)
    assert kernel_distance(real, fake, num_subsets=4, subset_size=20, seed=5)["mean"] == pytest.approx(ref, abs=1e-6)


def test_ssim_matches_skimage_and_data_range_effect():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 48, 48, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.rand(2, 3, 48, 48, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(x, y, data_range=1.0)
    for i in range(2):
        ref = sk_ssim(x[i].numpy(), y[i].numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
                      use_sample_covariance=False, data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    # ch6 5.3: unrelated images score low at the right range and ~0.99 at range 255
    z = torch.rand(2, 3, 48, 48, generator=g)
    w = torch.rand(2, 3, 48, 48, generator=g)
    assert ssim(z, w, 1.0).mean() < 0.1
    assert ssim(z, w, 255.0).mean() > 0.98
    assert torch.allclose(ssim(z, z, 1.0), torch.ones(2))


def test_ms_ssim_and_psnr_against_references():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 176, 176, generator=g)
    y = (x * 0.8 + 0.2 * torch.rand(2, 3, 176, 176, generator=g))
    assert torch.allclose(ms_ssim(x, y, 1.0), ref_ms_ssim(x, y, data_range=1.0, size_average=False), atol=1e-6)
    with pytest.raises(ValueError, match="larger than 160"):
        ms_ssim(x[..., :64, :64], y[..., :64, :64], 1.0)
    p = psnr(x, y)
    for i in range(2):
        assert p[i].item() == pytest.approx(sk_psnr(x[i].double().numpy(), y[i].double().numpy(), data_range=1.0), abs=1e-6)
    assert torch.isinf(psnr(x, x)).all()
    # hand case: constant error 0.1 -> MSE 0.01 -> 20 dB
    assert psnr(torch.zeros(1, 1, 4, 4, dtype=torch.float64), torch.full((1, 1, 4, 4), 0.1, dtype=torch.float64)).item() == pytest.approx(20.0, abs=1e-6)


def test_paired_quality_keys():
    g = torch.Generator().manual_seed(6)
    x, y = torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    m = PairedImageQuality()
    m.update(x[:2], y[:2])
    m.update(x[2:], y[2:])
    out = m.compute()
    assert set(out) == {"ssim[range=1]", "ssim[range=255]", "psnr"}
    assert out["ssim[range=1]"] == pytest.approx(ssim(x, y, 1.0).double().mean().item(), abs=1e-7)


@pytest.fixture(scope="module")
def random_lpips():
    import lpips

    torch.manual_seed(0)
    return lpips.LPIPS(net="alex", pnet_rand=True, pretrained=True, verbose=False).eval()


def test_lpips_pairs_and_diversity(random_lpips):
    g = torch.Generator().manual_seed(7)
    imgs = torch.rand(6, 3, 32, 32, generator=g)
    d = lpips_pairs(random_lpips, imgs[:3], imgs[3:])
    with torch.no_grad():
        ref = random_lpips(imgs[:3] * 2 - 1, imgs[3:] * 2 - 1).flatten()
    assert torch.allclose(d, ref, atol=1e-6)
    assert torch.allclose(lpips_pairs(random_lpips, imgs, imgs), torch.zeros(6), atol=1e-6)
    pairs = random_distinct_pairs(6, 100, seed=0)  # > 15 pairs exist -> all pairs
    assert pairs.shape == (15, 2)
    div = lpips_diversity(random_lpips, imgs, n_pairs=100, seed=0)
    with torch.no_grad():
        manual = np.mean([random_lpips(imgs[i : i + 1] * 2 - 1, imgs[j : j + 1] * 2 - 1).item() for i, j in pairs])
    assert div == pytest.approx(manual, abs=1e-6)
    sampled = random_distinct_pairs(100, 30, seed=1)
    assert (sampled[:, 0] != sampled[:, 1]).all() and np.array_equal(sampled, random_distinct_pairs(100, 30, seed=1))
    masks = torch.rand(4, 32, 32, generator=g) > 0.5
    rgb = masks_to_rgb(masks)
    assert rgb.shape == (4, 3, 32, 32) and torch.equal(rgb[:, 0], masks.float())
    assert lpips_diversity(random_lpips, rgb, n_pairs=6, seed=0) > 0


def test_kid_metric_class():
    from bench.metrics.image import KernelDistance

    g = torch.Generator().manual_seed(8)
    real, fake = torch.rand(30, 3, 16, 16, generator=g), torch.rand(30, 3, 16, 16, generator=g) ** 2
    ext = TinyExtractor()
    m = KernelDistance(ext, "tiny", num_subsets=3, subset_size=20, seed=1)
    m.update(real, real=True)
    m.update(fake, real=False)
    with torch.no_grad():
        expected = kernel_distance(ext(real).numpy(), ext(fake).numpy(), num_subsets=3, subset_size=20, seed=1)["mean"]
    assert m.compute() == {"kid[tiny]": pytest.approx(expected, abs=1e-6)}
    with pytest.raises(ValueError, match="keep_features"):
        m.set_reference(GaussianStats())


def test_ms_ssim_small_window_key_for_small_images():
    from bench.metrics.image import ms_ssim_key

    g = torch.Generator().manual_seed(9)
    x, y = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    m = PairedImageQuality(ssim_ranges=(1.0,), with_psnr=False, with_ms_ssim=True, ms_ssim_win=3)
    m.update(x, y)
    out = m.compute()
    assert set(out) == {"ssim[range=1]", "ms_ssim[win=3]"} and ms_ssim_key() == "ms_ssim"
    assert out["ms_ssim[win=3]"] == pytest.approx(ref_ms_ssim(x, y, data_range=1.0, win_size=3).item(), abs=1e-6)


def test_pixel_errors_per_pair_match_numpy():
    """MAE / MSE / RMSE per pair (DiffBoost Table I): RMSE is each image's root MSE, not the root of the mean."""
    import numpy as np
    import torch

    from bench.metrics.image import pixel_errors

    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, 16, 16, generator=gen), torch.rand(4, 3, 16, 16, generator=gen)
    out = pixel_errors(x, y)
    diff = (x - y).double().numpy().reshape(4, -1)
    assert np.allclose(out["mae"].numpy(), np.abs(diff).mean(1))
    assert np.allclose(out["mse"].numpy(), (diff ** 2).mean(1))
    assert np.allclose(out["rmse"].numpy(), np.sqrt((diff ** 2).mean(1)))
    assert float(out["rmse"].mean()) < float(out["mse"].mean().sqrt())  # Jensen: mean of roots < root of mean
