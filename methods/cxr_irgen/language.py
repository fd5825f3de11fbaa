"""CXR-IRGen's language module (thesis section 6.3.2, spec research/ch6_cxr.md section 3).

Stage 1, `ReportAutoencoder`: transformers' `BartForConditionalGeneration` as an autoencoder whose decoder sees a
single vector: the encoder's last hidden states pooled over the report (mean over non-pad tokens by default; the
``bos`` / ``eos`` alternatives of the thesis' Fig. 6.5) become a length-1 memory. Loss: token cross-entropy over
the padded sequence (the code includes the pad positions; ``loss_on_padding=False`` ignores them).

Stage 2, `Prior`: transformers' `ViTModel` (patch tokens + CLS, ``pooler_output`` = tanh(Linear(CLS))) from the
image embedding (the diffusion model's latent, or the image itself for Table 6.5's "Input image") to the frozen
stage-1 text vector; loss ``MSE + lambda * (1 - cos)`` (lambda 0.01; Table 6.5's "mse" and "cosine" keep one term).

Decoding (`decode`): the text vector as the decoder's memory, starting from ``</s>`` (BART's decoder start):
ancestral sampling without early stop (code), greedy, or beam search.

The mini profile trains BART from scratch with a byte-level BPE tokenizer learnt on the training reports
(`train_tokenizer`); the paper profile loads bart-base and its tokenizer from a local folder.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # BART's ids 0..4


def train_tokenizer(texts: Sequence[str], vocab_size: int, folder: Path) -> Any:
    """A byte-level BPE (``tokenizers``) on ``texts`` with BART's special tokens and ids, saved to ``folder``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                            show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", pad_token="<pad>",
                                  eos_token="</s>", unk_token="<unk>", mask_token="<mask>")
    from tokenizers import processors

    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(folder))
    return tok


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def pool(hidden: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, how: str, eos_id: int) -> torch.Tensor:
    """The representative vector (B, D): ``mean`` over non-pad tokens, ``bos`` = h[:, 0], ``eos`` = h at ``</s>``."""
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    if how == "bos":
        return hidden[:, 0]
    if how == "eos":
        pos = (ids == eos_id).int().argmax(1)
        return hidden[torch.arange(len(ids)), pos]
    raise ValueError(f"pooling must be mean, bos or eos, got {how!r}")


class ReportAutoencoder(nn.Module):
    """BART with a single-vector bottleneck."""

    def __init__(self, bart: Any, pooling: str = "mean") -> None:
        super().__init__()
        self.bart = bart
        self.pooling = pooling
        cfg = bart.config
        self.pad_id, self.eos_id, self.start_id = cfg.pad_token_id, cfg.eos_token_id, cfg.decoder_start_token_id

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bart.model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return pool(hidden, mask, ids, self.pooling, self.eos_id)

    def logits(self, memory: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) of ``ids`` from memory (B, D) (decoder input = ids shifted right)."""
        from transformers.models.bart.modeling_bart import shift_tokens_right

        dec_in = shift_tokens_right(ids, self.pad_id, self.start_id)
        dec_mask = torch.cat([torch.ones_like(mask[:, :1]), mask[:, :-1]], dim=1)
        out = self.bart.model.decoder(input_ids=dec_in, attention_mask=dec_mask, encoder_hidden_states=memory[:, None])
        return self.bart.lm_head(out.last_hidden_state) + self.bart.final_logits_bias

    def loss(self, ids: torch.Tensor, mask: torch.Tensor, on_padding: bool = True) -> torch.Tensor:
        logits = self.logits(self.encode(ids, mask), ids, mask)
        target = ids if on_padding else ids.masked_fill(mask == 0, -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)


def make_bart(tokenizer: Any, d_model: int, layers: int, heads: int, ffn: int, max_length: int) -> Any:
    """A randomly initialised `BartForConditionalGeneration` sized for the mini profile (BART's special ids)."""
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = BartConfig(vocab_size=len(tokenizer), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                     encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn,
                     decoder_ffn_dim=ffn, max_position_embeddings=max_length + 2, pad_token_id=tokenizer.pad_token_id,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=None, dropout=0.1)
    return BartForConditionalGeneration(cfg)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad / truncate to ``max_length`` (the code's ``pad_to_max_length``)."""
    tok = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return tok.input_ids, tok.attention_mask


def train_autoencoder(ae: ReportAutoencoder, ids: torch.Tensor, mask: torch.Tensor, epochs: int, batch_size: int,
                      lr: float, weight_decay: float, on_padding: bool, seed: int,
                      advance: Callable[..., None] | None = None) -> list[float]:
    """Stage 1: encoder and decoder trained on reconstruction (AdamW, code's betas / eps)."""
    ae.train()
    opt = torch.optim.AdamW(ae.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    losses = [optimizer_step(opt, ae.loss(ids[idx], mask[idx], on_padding), advance)
              for idx in minibatches(len(ids), epochs, batch_size, seed)]
    ae.eval().requires_grad_(False)
    return losses


def minibatches(n: int, epochs: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Index batches of ``epochs`` seeded shuffles of ``range(n)`` (the last batch of an epoch may be short)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            yield order[start:start + batch_size]


def optimizer_step(opt: Any, loss: torch.Tensor, advance: Callable[..., None] | None = None) -> float:
    """Backward, step, advance the progress bar; returns the loss value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if advance is not None:
        advance()
    return float(loss.detach())


def make_prior(input_size: int, channels: int, patch_size: int, hidden: int, layers: int, heads: int) -> Any:
    """The prior: transformers' `ViTModel` (with its pooling layer) on (B, channels, input_size, input_size)."""
    from transformers import ViTConfig, ViTModel

    return ViTModel(ViTConfig(image_size=input_size, patch_size=patch_size, num_channels=channels, hidden_size=hidden,
                              num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=4 * hidden),
                    add_pooling_layer=True)


def prior_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse+cos", lam: float = 0.01) -> torch.Tensor:
    """Eq. 6.3 as the code: ``MSE(pred, target) + lam * mean(1 - cos(pred, target))`` (``mse``/``cosine``: one term)."""
    mse = F.mse_loss(pred, target)
    cos = (1 - F.cosine_similarity(pred, target, dim=1, eps=1e-6)).mean()
    if kind == "mse+cos":
        return mse + lam * cos
    if kind == "mse":
        return mse
    if kind == "cosine":
        return cos
    raise ValueError(f"prior loss must be mse+cos, mse or cosine, got {kind!r}")


def train_prior(prior: Any, inputs: torch.Tensor, targets: torch.Tensor, epochs: int, batch_size: int, lr: float,
                weight_decay: float, kind: str, lam: float, seed: int,
                advance: Callable[..., None] | None = None) -> list[float]:
    """Stage 2: only the prior is trained (image embeddings and text vectors are precomputed by frozen modules)."""
    prior.train()
    if prior.config.hidden_size != targets.shape[1]:
        raise ValueError(f"prior width {prior.config.hidden_size} != text vector width {targets.shape[1]}")
    opt = torch.optim.AdamW(prior.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    losses = [optimizer_step(opt, prior_loss(prior(pixel_values=inputs[idx]).pooler_output, targets[idx], kind, lam),
                             advance)
              for idx in minibatches(len(inputs), epochs, batch_size, seed)]
    prior.eval().requires_grad_(False)
    return losses


def decode(ae: ReportAutoencoder, tokenizer: Any, memory: torch.Tensor, strategy: str, max_new_tokens: int,
           num_beams: int = 3, stop_at_eos: bool = False, seed: int = 0) -> list[str]:
    """Reports from text vectors (B, D): ``sample`` (code: multinomial at T=1, no top-k/top-p), ``greedy`` or
    ``beam``; ``stop_at_eos=False`` keeps going after ``</s>`` as the code's fixed-length loop (the special
    tokens are dropped from the text)."""
    from transformers.modeling_outputs import BaseModelOutput

    if strategy not in ("sample", "greedy", "beam"):
        raise ValueError(f"decoding must be sample, greedy or beam, got {strategy!r}")
    kw: dict[str, Any] = dict(do_sample=strategy == "sample", num_beams=num_beams if strategy == "beam" else 1,
                              max_new_tokens=max_new_tokens, decoder_start_token_id=ae.start_id,
                              pad_token_id=ae.pad_id, forced_bos_token_id=None, forced_eos_token_id=None,
                              no_repeat_ngram_size=0)
    if strategy == "sample":
        kw.update(top_k=0, top_p=1.0, temperature=1.0)
    if not stop_at_eos:
        kw.update(eos_token_id=None, min_new_tokens=max_new_tokens) if strategy != "beam" else None
    enc = BaseModelOutput(last_hidden_state=memory[:, None].float())
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        out = ae.bart.generate(encoder_outputs=enc, attention_mask=torch.ones(len(memory), 1, dtype=torch.long), **kw)
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
