"""The Meshed-Memory Transformer (Cornia et al., CVPR 2020), the captioning model of M2Trans (Miura et al. 2021,
``ysmiura/ifcc``), at configurable size.

* Memory-augmented encoder: in every encoder self-attention, ``memory_slots`` learned key / value rows are appended
  to the keys and values (a-priori knowledge not in the image); all encoder layers' outputs are kept.
* Meshed decoder: each decoder layer cross-attends to every encoder layer's output separately and sums them with
  learned sigmoid gates ``alpha_i = sigmoid(W_i [Y; C_i] + b_i)`` (normalised by the number of layers).
The factual-completeness rewards (NLI / entity-match RL fine-tuning) of M2Trans are not implemented: training is
cross-entropy only.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from baselines.r2gen.captioning import PatchExtractor, causal_mask


class MemoryAttention(nn.Module):
    """Multi-head self-attention whose keys and values carry learned memory slots."""

    def __init__(self, d_model: int, heads: int, slots: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dk = heads, d_model // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.mem_k = nn.Parameter(torch.randn(1, slots, d_model) / math.sqrt(self.dk))
        self.mem_v = nn.Parameter(torch.randn(1, slots, d_model) / math.sqrt(slots))
        self.drop = nn.Dropout(dropout)
        self.slots = slots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        k = torch.cat([self.k(x), math.sqrt(self.dk) * self.mem_k.expand(b, -1, -1)], 1)
        v = torch.cat([self.v(x), math.sqrt(self.slots) * self.mem_v.expand(b, -1, -1)], 1)
        split = lambda t: t.view(b, -1, self.heads, self.dk).transpose(1, 2)  # noqa: E731
        att = torch.softmax(split(self.q(x)) @ split(k).transpose(-1, -2) / math.sqrt(self.dk), -1)
        out = (self.drop(att) @ split(v)).transpose(1, 2).reshape(b, n, d)
        return self.o(out)


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn: int, slots: int, dropout: float) -> None:
        super().__init__()
        self.attn = MemoryAttention(d_model, heads, slots, dropout)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, d_model))
        self.n1, self.n2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.n1(x + self.drop(self.attn(x)))
        return self.n2(x + self.drop(self.ffn(x)))


class MeshedDecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn: int, n_enc: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.gates = nn.ModuleList([nn.Linear(2 * d_model, d_model) for _ in range(n_enc)])
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, d_model))
        self.n1, self.n2, self.n3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, y: torch.Tensor, encs: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        y = self.n1(y + self.drop(self.self_attn(y, y, y, attn_mask=mask, need_weights=False)[0]))
        mesh = 0
        for gate, enc in zip(self.gates, encs):
            c = self.cross_attn(y, enc, enc, need_weights=False)[0]
            mesh = mesh + torch.sigmoid(gate(torch.cat([y, c], -1))) * c
        y = self.n2(y + self.drop(mesh / math.sqrt(len(encs))))
        return self.n3(y + self.drop(self.ffn(y)))


class M2Model(nn.Module):
    def __init__(self, vocab_size: int, d_model: int = 512, layers: int = 3, heads: int = 8, ffn: int = 2048,
                 memory_slots: int = 40, max_length: int = 100, dropout: float = 0.1) -> None:
        super().__init__()
        self.visual = PatchExtractor(d_model)
        self.encoder = nn.ModuleList([EncoderLayer(d_model, heads, ffn, memory_slots, dropout) for _ in range(layers)])
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.zeros(1, max_length + 2, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.decoder = nn.ModuleList([MeshedDecoderLayer(d_model, heads, ffn, layers, dropout) for _ in range(layers)])
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.visual(images)
        encs = []
        for layer in self.encoder:
            x = layer(x)
            encs.append(x)
        y = self.embed(tokens) + self.pos[:, :tokens.shape[1]]
        mask = causal_mask(tokens.shape[1], tokens.device)
        for layer in self.decoder:
            y = layer(y, encs, mask)
        return self.out(y)
