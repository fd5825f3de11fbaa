"""Time a first and a second (cached) Frechet-distance evaluation, 1000 vs 1000 images at 64 px.

The first evaluation finds no reference statistics in the cache: it loads the real
images, extracts their features, stores the statistics under
``reference_key(dataset, split, extractor, resolution)``, extracts the generated
images and computes the distance. The second evaluation hits the cache and only
extracts the generated images. Real images: derm-mini train (world seed 2018);
"generated" images: derm-mini train of another world seed.

    python benchmarks/metrics.py                         # random-init ResNet-18 trunk (512-d), no weights needed
    python benchmarks/metrics.py --extractor inception-v3 --weights-dir /path/to/weights
"""
from __future__ import annotations

import argparse
import tempfile
import time


def build_extractor(name: str, weights_dir: str | None):
    import torch

    if name == "resnet18-random":
        import torchvision

        from bench.metrics.extractors import IMAGENET_MEAN, IMAGENET_STD

        torch.manual_seed(0)
        net = torchvision.models.resnet18(weights=None)
        net.fc = torch.nn.Identity()
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

        class Trunk(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.net((x - mean) / std)

        return Trunk().eval()
    from bench.metrics.extractors import load_extractor

    return load_extractor(name, weights_dir=weights_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images per set")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--extractor", default="resnet18-random")
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args(argv)

    import torch

    from bench.data.derm_mini import DermMini
    from bench.metrics.image import FrechetDistance
    from bench.metrics.refstats import reference_key, reference_stats

    extractor = build_extractor(args.extractor, args.weights_dir)
    sizes = {"train": args.n, "val": 0, "test": 0}
    real_source = DermMini(image_size=args.size, sizes=sizes)
    gen_samples = DermMini(image_size=args.size, sizes=sizes, world_seed=7).load("train")
    generated = torch.stack([gen_samples[i].image for i in range(args.n)])

    def load_real() -> torch.Tensor:
        samples = real_source.load("train")
        return torch.stack([samples[i].image for i in range(args.n)])

    key = reference_key("derm-mini", real_source.split_checksum("train")[:12], args.extractor, args.size)
    times, values = [], []
    with tempfile.TemporaryDirectory() as cache_dir:
        for _ in range(2):
            t0 = time.perf_counter()
            stats = reference_stats(cache_dir, key, extractor, load_real, batch_size=args.batch_size)
            fd = FrechetDistance(extractor, args.extractor, batch_size=args.batch_size)
            fd.set_reference(stats)
            fd.update(generated, real=False)
            values.append(fd.compute()[fd.key])
            times.append(time.perf_counter() - t0)
    print(f"Frechet distance, {args.n} real vs {args.n} generated images at {args.size} px, extractor {args.extractor}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"first evaluation (load + extract real, extract generated): {times[0]:.2f} s   fd = {values[0]:.4f}")
    print(f"second evaluation (cached real statistics):               {times[1]:.2f} s   fd = {values[1]:.4f}")
    print(f"ratio first / second: {times[0] / times[1]:.2f}x")


if __name__ == "__main__":
    main()
