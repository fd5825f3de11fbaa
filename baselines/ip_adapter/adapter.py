"""Decoupled cross-attention on a diffusers UNet, built from diffusers' own IP-Adapter parts (Ye et al. 2023).

`install_ip_adapter` gives every cross-attention layer an `IPAdapterAttnProcessor2_0` (its ``to_k_ip``/``to_v_ip``
initialised from the layer's ``to_k``/``to_v``, as the original ``tutorial_train.py`` does) and the UNet an
``encoder_hid_proj`` = `MultiIPAdapterImageProjection([ImageProjection])` with ``encoder_hid_dim_type =
"ip_image_proj"``, so that ``unet(x, t, text_states, added_cond_kwargs={"image_embeds": [e]})`` with ``e`` of shape
(N, 1, D) attends to the text tokens and, in a separate attention added with weight ``scale``, to ``num_tokens``
image tokens. This is the state diffusers' ``UNet2DConditionLoadersMixin._load_ip_adapter_weights`` builds from a
released checkpoint; here it is built empty for training.

`adapter_state_dict` writes the trained weights in the original IP-Adapter checkpoint layout
(``image_proj.proj.*``, ``image_proj.norm.*``, ``ip_adapter.<k>.to_k_ip.weight`` with ``k`` the layer's index among
all attention processors, 1, 3, 5, ... on Stable Diffusion), which diffusers' IP-Adapter loaders also read.
"""
from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

IMAGE_PROJ_PREFIX = "image_proj."
IP_LAYERS_PREFIX = "ip_adapter."


def _attention_module(unet: Any, processor_name: str) -> Any:
    """The `Attention` module owning processor ``processor_name`` (e.g. ``down_blocks.0....attn2.processor``)."""
    return unet.get_submodule(processor_name.removesuffix(".processor"))


def _is_cross_attention(unet: Any, processor_name: str) -> bool:
    return bool(getattr(_attention_module(unet, processor_name), "is_cross_attention", False))


def install_ip_adapter(unet: Any, image_embed_dim: int, num_tokens: int = 4, scale: float = 1.0,
                       init_from_text: bool = True, seed: int = 0) -> None:
    """Add an (untrained) IP-Adapter to ``unet`` in place.

    Args:
        unet: a diffusers `UNet2DConditionModel` without an ``encoder_hid_proj``.
        image_embed_dim: width D of the image encoder's embedding (CLIP ViT-H/14: 1024; mini-clip: 96).
        num_tokens: image context tokens made by the projection (original IP-Adapter: 4).
        scale: weight of the image attention (``IPAdapterAttnProcessor2_0.scale``).
        init_from_text: initialise ``to_k_ip``/``to_v_ip`` as copies of ``to_k``/``to_v`` (original); else leave
            PyTorch's default initialisation.
        seed: seeds the random initialisation of the new layers (the global RNG is left untouched).

    Raises:
        ValueError: the UNet already has an ``encoder_hid_proj`` (text projection or an adapter).
    """
    import torch

    if unet.encoder_hid_proj is not None:
        raise ValueError(f"the UNet already has an encoder_hid_proj ({type(unet.encoder_hid_proj).__name__}); "
                         "install the IP-Adapter on a plain text-conditioned UNet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _install(unet, image_embed_dim, num_tokens, scale, init_from_text)


def _install(unet: Any, image_embed_dim: int, num_tokens: int, scale: float, init_from_text: bool) -> None:
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

    cross_dim = int(unet.config.cross_attention_dim)
    processors: dict[str, Any] = {}
    for name in unet.attn_processors:
        attn = _attention_module(unet, name)
        if not _is_cross_attention(unet, name):
            processors[name] = AttnProcessor2_0()
            continue
        proc = IPAdapterAttnProcessor2_0(hidden_size=attn.to_k.out_features, cross_attention_dim=cross_dim,
                                         num_tokens=(num_tokens,), scale=scale)
        if init_from_text:
            with torch.no_grad():
                proc.to_k_ip[0].weight.copy_(attn.to_k.weight)
                proc.to_v_ip[0].weight.copy_(attn.to_v.weight)
        processors[name] = proc.to(device=unet.device, dtype=unet.dtype)
    unet.set_attn_processor(processors)
    projection = ImageProjection(image_embed_dim=image_embed_dim, cross_attention_dim=cross_dim,
                                 num_image_text_embeds=num_tokens)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection([projection]).to(device=unet.device, dtype=unet.dtype)
    unet.register_to_config(encoder_hid_dim_type="ip_image_proj")


def ip_processors(unet: Any) -> dict[str, Any]:
    """The IP-Adapter processors of ``unet`` by processor name, in `attn_processors` order."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    kinds = (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)
    return {name: proc for name, proc in unet.attn_processors.items() if isinstance(proc, kinds)}


def adapter_parameters(unet: Any) -> list[Any]:
    """The trainable IP-Adapter parameters: the image projection and every ``to_k_ip``/``to_v_ip``."""
    params = list(unet.encoder_hid_proj.parameters())
    for proc in ip_processors(unet).values():
        params += list(proc.to_k_ip.parameters()) + list(proc.to_v_ip.parameters())
    return params


def set_ip_scale(unet: Any, scale: float) -> None:
    """Weight of the image attention in every IP-Adapter layer (0 turns the image prompt off)."""
    for proc in ip_processors(unet).values():
        proc.scale = [float(scale)] * len(proc.scale)


def _checkpoint_parameters(unet: Any) -> dict[str, Any]:
    """Checkpoint key -> live parameter of the installed adapter (the original layout's key names)."""
    projection = unet.encoder_hid_proj.image_projection_layers[0]
    params = {f"{IMAGE_PROJ_PREFIX}proj.weight": projection.image_embeds.weight,
              f"{IMAGE_PROJ_PREFIX}proj.bias": projection.image_embeds.bias,
              f"{IMAGE_PROJ_PREFIX}norm.weight": projection.norm.weight,
              f"{IMAGE_PROJ_PREFIX}norm.bias": projection.norm.bias}
    ip = ip_processors(unet)
    for index, name in enumerate(unet.attn_processors):
        if name in ip:
            params[f"{IP_LAYERS_PREFIX}{index}.to_k_ip.weight"] = ip[name].to_k_ip[0].weight
            params[f"{IP_LAYERS_PREFIX}{index}.to_v_ip.weight"] = ip[name].to_v_ip[0].weight
    return params


def adapter_state_dict(unet: Any) -> dict[str, Any]:
    """The adapter weights in the original IP-Adapter checkpoint layout (flat keys, float32 CPU copies)."""
    import torch

    return {k: v.detach().to("cpu", torch.float32, copy=True).contiguous()
            for k, v in _checkpoint_parameters(unet).items()}


def load_adapter_state(unet: Any, state: dict[str, Any]) -> None:
    """Copy weights written by `adapter_state_dict` into an adapter installed by `install_ip_adapter`.

    Raises:
        ValueError: a key is missing or unexpected, or a shape differs (the checkpoint was made for another UNet,
            image encoder or ``num_tokens``).
    """
    import torch

    targets = _checkpoint_parameters(unet)
    missing, unexpected = sorted(set(targets) - set(state)), sorted(set(state) - set(targets))
    if missing or unexpected:
        raise ValueError(f"IP-Adapter weights do not fit this UNet: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, param in targets.items():
        if tuple(param.shape) != tuple(state[key].shape):
            raise ValueError(f"IP-Adapter weight {key} has shape {tuple(state[key].shape)}, this UNet needs "
                             f"{tuple(param.shape)}")
    with torch.no_grad():
        for key, param in targets.items():
            param.copy_(state[key].to(param))
