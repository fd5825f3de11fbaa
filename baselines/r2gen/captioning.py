"""Shared machinery of the image-to-report baselines R2Gen and M2Trans (thesis Table 6.3 / 6.4 rows).

* `WordVocab`: R2Gen's word-level vocabulary (tokens counted on the training reports, kept at ``threshold`` or
  more occurrences; ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3); tokens = `bench.metrics.text.tokenize`
  (lower-case, punctuation split), truncated to ``max_length``.
* `PatchExtractor`: a small CNN turning (N, C, H, W) images into patch features (N, P, d) (mini; the papers use an
  ImageNet ResNet-101 / a CheXpert DenseNet-121, which need local weights).
* `fit_captioner` / `decode`: teacher-forced cross-entropy training (Adam) and greedy / beam decoding of a model
  with ``forward(images, tokens) -> logits`` (predicting tokens[1:]).
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

PAD, BOS, EOS, UNK = 0, 1, 2, 3


class WordVocab:
    """Word vocabulary with R2Gen's count threshold."""

    def __init__(self, words: Sequence[str]) -> None:
        self.itos = ["<pad>", "<bos>", "<eos>", "<unk>", *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Sequence[str], threshold: int) -> WordVocab:
        from bench.metrics.text import tokenize

        counts = Counter(w for t in texts for w in tokenize(t))
        return cls(sorted(w for w, n in counts.items() if n >= threshold))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """(N, max_length + 2): <bos> tokens <eos> <pad>..."""
        from bench.metrics.text import tokenize

        out = torch.full((len(texts), max_length + 2), PAD, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.stoi.get(w, UNK) for w in tokenize(t)][:max_length]
            out[i, :len(ids) + 2] = torch.tensor([BOS, *ids, EOS])
        return out

    def decode(self, ids: Sequence[int]) -> str:
        words = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                words.append(self.itos[i])
        text = " ".join(words)
        for p in (" .", " ,", " ;", " :"):
            text = text.replace(p, p.strip())
        return text


class PatchExtractor(nn.Module):
    """Small CNN: (N, C, H, W) in [0, 1] -> (N, (H/8)(W/8), d) patch features."""

    def __init__(self, d_model: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4 * w, d_model, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grey = images.float().mean(1, keepdim=True) if images.shape[1] != 1 else images.float()
        return self.net(grey * 2 - 1).flatten(2).transpose(1, 2)


def causal_mask(n: int, device: Any = None) -> torch.Tensor:
    """Additive (n, n) mask: -inf above the diagonal."""
    return torch.triu(torch.full((n, n), float("-inf"), device=device), diagonal=1)


def fit_captioner(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor, epochs: int, batch_size: int,
                  lr: float, seed: int, advance: Callable[..., None] | None = None, lr_step: int = 50,
                  lr_gamma: float = 0.1) -> list[float]:
    """Teacher-forced cross-entropy (pads ignored), Adam, learning rate times ``lr_gamma`` every ``lr_step`` epochs
    (R2Gen: 50, 0.1)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, lr_step, gamma=lr_gamma)
    model.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            tok = tokens[idx]
            length = int((tok != PAD).sum(1).max())
            tok = tok[:, :length]
            logits = model(images[idx], tok[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1), ignore_index=PAD)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.1 * 50)
            opt.step()
            losses.append(float(loss.detach()))
            if advance is not None:
                advance()
        sched.step()
    model.eval()
    return losses


def decode(model: nn.Module, images: torch.Tensor, max_length: int, beam: int = 1) -> list[list[int]]:
    """Greedy (``beam=1``) or beam-search token ids per image (each model call sees the whole prefix)."""
    with torch.no_grad():
        if beam <= 1:
            seq = torch.full((len(images), 1), BOS, dtype=torch.long)
            done = torch.zeros(len(images), dtype=torch.bool)
            for _ in range(max_length + 1):
                nxt = model(images, seq)[:, -1].argmax(-1)
                nxt[done] = PAD
                seq = torch.cat([seq, nxt[:, None]], 1)
                done |= nxt == EOS
                if bool(done.all()):
                    break
            return [s[1:].tolist() for s in seq]
        return [_beam_one(model, images[i:i + 1], max_length, beam) for i in range(len(images))]


def _beam_one(model: nn.Module, image: torch.Tensor, max_length: int, beam: int) -> list[int]:
    beams = [([BOS], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for _ in range(max_length + 1):
        seqs = torch.tensor([b[0] for b in beams])
        logp = F.log_softmax(model(image.expand(len(beams), -1, -1, -1), seqs)[:, -1], -1)
        cand = []
        for k, (s, score) in enumerate(beams):
            top = torch.topk(logp[k], beam)
            cand += [(s + [int(i)], score + float(v)) for v, i in zip(top.values, top.indices)]
        cand.sort(key=lambda c: c[1], reverse=True)
        beams = []
        for s, score in cand:
            (finished if s[-1] == EOS else beams).append((s, score))
            if len(beams) == beam:
                break
        if not beams or len(finished) >= beam:
            break
    best = max(finished or beams, key=lambda c: c[1] / len(c[0]))
    return best[0][1:]
