"""R2Gen's memory-driven Transformer (Chen et al., EMNLP 2020; ``zhjohnchan/R2Gen``), at configurable size.

* Relational memory (RM): ``num_slots`` memory rows updated once per generated token: multi-head attention of the
  memory over [memory; previous token embedding], an MLP, and LSTM-style input / forget gates.
* Memory-driven conditional layer norm (MCLN): every decoder layer norm's gamma and beta are shifted by MLPs of the
  flattened memory state of that time step.
* A standard Transformer encoder over the image's patch features; the decoder's sublayers are pre-norm residual
  with MCLN (R2Gen's ``SublayerConnection``).
"""
from __future__ import annotations

import torch
from torch import nn

from .captioning import PatchExtractor, causal_mask


class RelationalMemory(nn.Module):
    def __init__(self, num_slots: int, d_model: int, heads: int) -> None:
        super().__init__()
        self.num_slots, self.d_model = num_slots, d_model
        self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, d_model), nn.ReLU())
        self.W = nn.Linear(d_model, 2 * d_model)
        self.U = nn.Linear(d_model, 2 * d_model)

    def initial(self, batch: int) -> torch.Tensor:
        """R2Gen's initial memory: an identity block, zero-padded to d_model."""
        eye = torch.eye(self.num_slots)
        if self.d_model > self.num_slots:
            eye = torch.cat([eye, torch.zeros(self.num_slots, self.d_model - self.num_slots)], 1)
        return eye[:, :self.d_model].expand(batch, -1, -1)

    def step(self, memory: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kv = torch.cat([memory, y[:, None]], 1)
        nxt = memory + self.attn(memory, kv, kv, need_weights=False)[0]
        nxt = nxt + self.mlp(nxt)
        gates = self.W(y)[:, None] + self.U(torch.tanh(memory))
        i, f = gates.chunk(2, dim=-1)
        return torch.sigmoid(i) * torch.tanh(nxt) + torch.sigmoid(f) * memory

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Memory states (B, T, S * d) for the token embeddings (B, T, d): state t has read tokens 0..t."""
        memory = self.initial(embeddings.shape[0]).to(embeddings)
        states = []
        for t in range(embeddings.shape[1]):
            memory = self.step(memory, embeddings[:, t])
            states.append(memory.flatten(1))
        return torch.stack(states, 1)


class MCLN(nn.Module):
    def __init__(self, d_model: int, memory_dim: int) -> None:
        super().__init__()
        self.gamma, self.beta = nn.Parameter(torch.ones(d_model)), nn.Parameter(torch.zeros(d_model))
        self.mlp_gamma = nn.Sequential(nn.Linear(memory_dim, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        self.mlp_beta = nn.Sequential(nn.Linear(memory_dim, d_model), nn.ReLU(), nn.Linear(d_model, d_model))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        mean, std = x.mean(-1, keepdim=True), x.std(-1, keepdim=True)
        return (self.gamma + self.mlp_gamma(memory)) * (x - mean) / (std + 1e-6) + self.beta + self.mlp_beta(memory)


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn: int, memory_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, d_model))
        self.norms = nn.ModuleList([MCLN(d_model, memory_dim) for _ in range(3)])
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, enc: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norms[0](x, memory)
        x = x + self.drop(self.self_attn(h, h, h, attn_mask=mask, need_weights=False)[0])
        h = self.norms[1](x, memory)
        x = x + self.drop(self.cross_attn(h, enc, enc, need_weights=False)[0])
        return x + self.drop(self.ffn(self.norms[2](x, memory)))


class R2GenModel(nn.Module):
    def __init__(self, vocab_size: int, d_model: int = 512, layers: int = 3, heads: int = 8, ffn: int = 512,
                 num_slots: int = 3, max_length: int = 100, dropout: float = 0.1) -> None:
        super().__init__()
        self.visual = PatchExtractor(d_model)
        enc_layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc_layer, layers, enable_nested_tensor=False)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.zeros(1, max_length + 2, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.rm = RelationalMemory(num_slots, d_model, heads)
        self.decoder = nn.ModuleList([DecoderLayer(d_model, heads, ffn, num_slots * d_model, dropout) for _ in range(layers)])
        self.final = MCLN(d_model, num_slots * d_model)
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        enc = self.encoder(self.visual(images))
        emb = self.embed(tokens)
        memory = self.rm(emb)
        x = emb + self.pos[:, :tokens.shape[1]]
        mask = causal_mask(tokens.shape[1], tokens.device)
        for layer in self.decoder:
            x = layer(x, enc, memory, mask)
        return self.out(self.final(x, memory))
