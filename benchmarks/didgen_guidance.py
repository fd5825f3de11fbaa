"""Speed of the vectorised self-attention layout loss against the per-pixel loop, at equal loss values.

DiDGen's reference code computes L_SA (thesis Eq. 4.9) with a Python loop over the lesion pixels of the
32x32 self-attention map; `bench.diffusion.layout.sa_layout_loss` computes the same value as one
bilinear form ``m^T A_S b / (|m| |b|)``. Both are timed on the same random row-stochastic maps and
disk masks (forward and backward, as in a guidance step), and the loss values are compared.

    OMP_NUM_THREADS=1 python benchmarks/didgen_guidance.py            # 32x32 SA maps (SD 2.1-base at 512 px)
    OMP_NUM_THREADS=1 python benchmarks/didgen_guidance.py --side 16 --repeats 5
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch

    from bench.diffusion.layout import sa_layout_loss, sa_layout_loss_per_pixel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=32, help="side of the self-attention map (N = side^2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each formulation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    n = args.side * args.side
    g = torch.Generator().manual_seed(args.seed)
    logits = torch.randn(n, n, generator=g)
    yy, xx = torch.meshgrid(torch.arange(args.side), torch.arange(args.side), indexing="ij")
    mask = (yy - args.side * 0.45) ** 2 + (xx - args.side * 0.55) ** 2 <= (args.side * 0.3) ** 2

    def run(fn):
        best, value = float("inf"), None
        for _ in range(args.repeats):
            x = logits.clone().requires_grad_(True)
            start = time.perf_counter()
            loss = fn(x.softmax(-1), mask)
            loss.backward()
            best = min(best, time.perf_counter() - start)
            value = loss.item()
        return best, value

    t_vec, v_vec = run(sa_layout_loss)
    t_loop, v_loop = run(sa_layout_loss_per_pixel)
    print(f"self-attention {args.side}x{args.side} (N={n}), lesion pixels {int(mask.sum())}, 1 thread, best of {args.repeats}")
    print(f"  per-pixel loop : {t_loop * 1e3:9.2f} ms  L_SA = {v_loop:.8f}")
    print(f"  vectorised     : {t_vec * 1e3:9.2f} ms  L_SA = {v_vec:.8f}")
    print(f"  |difference|   : {abs(v_loop - v_vec):.2e}   speed ratio (loop / vectorised): {t_loop / t_vec:.1f}x")


if __name__ == "__main__":
    main()
