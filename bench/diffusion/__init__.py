"""Shared diffusion machinery: attention capture, codecs, model loading, sampling, inversion, guidance, tokens.

Every thesis method steers or fine-tunes a text-to-image diffusion model through its attention maps; these
modules are the one tested implementation they share. Stable interfaces:

``bench.diffusion.attention``
    ``AttentionStore(cross=True, self_attention=False, resolutions=None, places=None, mode="average"|"per_step"|"last",
    keep_grad=False, select=None)`` collects maps (B, Q, K), mean over heads, per layer name / resolution /
    timestep; ``store.maps(res, kind="cross"|"self", step=None)`` -> (B, res, res, K), rows summing to one over
    keys. Install ``unet.set_attn_processor(storing_processors(unet, store, fused=True))``; processors compute
    standard attention (outputs unchanged) and use fused SDPA where nothing is captured. ``token_maps`` selects
    tokens; ``classic_processors`` gives diffusers' explicit-softmax processor (fast on CPU for tiny heads).
``bench.diffusion.codecs``
    ``Codec``: ``encode(images in [0,1]) -> latents``, ``decode(latents) -> images in [0,1]``, ``channels``,
    ``factor``. ``VaeCodec(vae)`` (scaling factor from ``vae.config``), ``IdentityCodec(channels)`` (pixel space,
    [0,1] <-> [-1,1]).
``bench.diffusion.models``
    ``SDComponents(unet, text_encoder, tokenizer, scheduler, codec, name, vae)`` with ``encode_prompt(prompts)``;
    ``load_sd(folder_or_hub_id, allow_download=False)`` (missing folder: one-line ``ModelError``);
    ``make_tiny_sd(folder)`` writes a tiny random SD folder in the real layout via ``save_pretrained``;
    ``load_mini_sd()`` / ``load_mini_clip()`` return the shipped mini models; ``export_sd_folder``.
``bench.diffusion.sampling``
    ``sample(unet, cond, scheduler, codec, steps, guidance_scale, generator, callback, uncond=..., latents=...,
    store=...)`` with classifier-free guidance over diffusers schedulers (``make_scheduler("ddpm"|"ddim"|"pndm"|
    "dpm-solver", parts.scheduler)``); ``ddim_invert`` (+ ``ddim_scheduler_for_inversion``);
    ``latent_guidance_step(latents, loss_fn, step_size)``; re-exports ``add_placeholder_tokens``,
    ``token_indices`` (``bench.diffusion.tokens``) and ``add_lora``, ``attention_parameters``,
    ``lora_state_dict`` (``bench.diffusion.finetune``, peft).
``bench.diffusion.derm_t2i``
    ``DermT2IConfig`` / ``DermT2I``: the fine-tuned derm text-to-image generator DiDGen, ZestGuide, Attn-Refocus and
    the dual-branch generator subclass (backbone, fit, prompts, save/load; subclasses add ``generate``);
    ``PlainT2IConfig`` / ``PlainT2I`` (SD-Finetune, DreamBooth); ``generate_with_condition_masks``. DermPrompt
    text, backbone loading and prompt encoding: ``bench.diffusion.dermprompt``; LLM rephrasing: ``rephrase``.
``bench.diffusion.controlnet``
    ``build_controlnet``, ``mask_condition``, ``controlnet_residuals`` (a ``unet_kwargs`` hook of ``sample``),
    ``save_controlnet`` / ``load_controlnet``, ``noise_generator(seed, index)``; ``bench.diffusion.mask_following``
    has ``lesion_darkness``. ``bench.diffusion.cxr_prompts``: CheXpert label vector -> prompt.

Methods and baselines import only ``bench/`` (tests/test_layers.py): what two of them share lives here.
Submodules import torch / diffusers lazily or at their own import; importing this package is free.
"""
