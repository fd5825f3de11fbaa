"""Sampling overhead of bench.diffusion.sampling on mini-sd, against a plain diffusers loop on the same weights.

Same scheduler (DDIM), steps, batch, guidance and initial noise for every variant; the variants run interleaved
(A B C ... A B C ...) so that load from other processes affects them alike, and the median time per variant
is compared with the plain loop's.

Variants:
    plain            diffusers loop (classifier-free guidance by hand), diffusers' default SDPA processors
    plain-classic    the same loop with diffusers' explicit-softmax AttnProcessor on every layer
    bench            bench.diffusion.sampling.sample, default processors
    bench+capture    sample() with StoringAttnProcessor, 16x16 cross-attention averaged over steps (fused elsewhere)
    bench+capture-classic   the same with explicit softmax everywhere (fused=False), the mini-profile setting
    bench+capture-all       capture of every cross- and self-attention layer, per step

Run:  python benchmarks/sampling.py --steps 25 --batch 8 --repeats 3 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time


def plain_loop(unet, scheduler, cond, uncond, latents, steps, guidance):
    import torch

    scheduler.set_timesteps(steps)
    x = latents.clone()
    context = torch.cat([uncond.expand(len(cond), -1, -1), cond])
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_in = scheduler.scale_model_input(torch.cat([x, x]), t)
            eps_u, eps_c = unet(model_in, t, encoder_hidden_states=context).sample.chunk(2)
            x = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, x).prev_sample
    return ((x + 1) / 2).clamp(0, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from bench.diffusion.attention import AttentionStore, storing_processors
    from bench.diffusion.models import load_mini_sd
    from bench.diffusion.sampling import make_scheduler, sample

    torch.set_num_threads(args.threads)
    parts = load_mini_sd()
    unet = parts.unet
    prompts = ["a red circle and a blue square", "a striped yellow star"] * (args.batch // 2 + 1)
    cond = parts.encode_prompt(prompts[:args.batch])
    uncond = parts.encode_prompt([""])
    noise = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    scheduler = make_scheduler("ddim", parts.scheduler)

    def run_plain(processor):
        unet.set_attn_processor(processor)
        return plain_loop(unet, scheduler, cond, uncond, noise, args.steps, args.guidance)

    def run_bench(store=None, fused=True):
        unet.set_attn_processor(AttnProcessor2_0() if store is None else storing_processors(unet, store, fused))
        return sample(unet, cond, scheduler, parts.codec, steps=args.steps, guidance_scale=args.guidance,
                      uncond=uncond, latents=noise.clone(), store=store)

    variants = {
        "plain": lambda: run_plain(AttnProcessor2_0()),
        "plain-classic": lambda: run_plain(AttnProcessor()),
        "bench": lambda: run_bench(),
        "bench+capture": lambda: run_bench(AttentionStore(resolutions={16}, mode="average")),
        "bench+capture-classic": lambda: run_bench(AttentionStore(resolutions={16}, mode="average"), fused=False),
        "bench+capture-all": lambda: run_bench(AttentionStore(self_attention=True, mode="per_step")),
    }
    outputs = {name: fn() for name, fn in variants.items()}  # warm-up, and the outputs to compare
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["plain"])
    print(f"mini-sd, DDIM {args.steps} steps, batch {args.batch}, guidance {args.guidance}, "
          f"{args.threads} thread(s), median of {args.repeats} interleaved runs")
    print(f"{'variant':<24}{'seconds':>10}{'ratio vs plain':>16}{'max |diff| vs plain':>22}")
    for name in variants:
        med = statistics.median(times[name])
        diff = (outputs[name] - outputs["plain"]).abs().max().item()
        print(f"{name:<24}{med:>10.2f}{med / base:>16.2f}{diff:>22.2e}")


if __name__ == "__main__":
    main()
