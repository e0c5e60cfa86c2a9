"""The caption LM's fast decoding loop: GPT-2-family models with a static (preallocated) KV cache.

The reference loop (`CaptionExpander._decode_reference`) calls the Hugging Face forward every step: a
`DynamicCache` that concatenates every layer's keys and values each step (quadratic copying; half the time at
batch 1024), a 4-D mask rebuilt every step, the attention mask grown by `torch.cat`, and a few hundred small
Python calls per token. This loop runs the model's own layers (`ln_1`, `c_attn`, `c_proj`, `mlp`, `ln_f`,
`lm_head`, called as modules) and scaled-dot-product attention with the same arguments Hugging Face passes, over
keys and values written in place into buffers sized once per batch. Every tensor the model computes has the
shape and values the reference computes, so the logits are the same bits on the same device and the captions
are identical (tested on the shipped LMs over many prompts, seeds and batch sizes).

What it cannot run (`unsupported` says why, and the expander falls back to the reference loop): any other
architecture (Llama, Qwen, remote code, ...), GPT-2 with cross-attention, or an attention implementation other
than `sdpa` (the one Hugging Face picks by default; `eager` computes softmax differently).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def unsupported(model: torch.nn.Module) -> str | None:
    """None when `decode` can run this model exactly as its Hugging Face forward would; else the reason."""
    config = getattr(model, "config", None)
    if type(model).__name__ != "GPT2LMHeadModel" or getattr(config, "model_type", None) != "gpt2":
        return f"architecture {type(model).__name__} (the fast path runs GPT2LMHeadModel only)"
    if getattr(config, "add_cross_attention", False):
        return "GPT-2 with cross-attention"
    impl = getattr(config, "_attn_implementation", None)
    if impl != "sdpa":
        return f"attention implementation {impl!r} (the fast path matches 'sdpa' only)"
    return None


class Gpt2Decoder:
    """Batched sampling for one GPT2LMHeadModel, the model's weights shared (nothing copied).

    `decode` runs one batch: prefill of the left-padded prompts, then one token per step written into a
    preallocated cache, sampled with `sample` from each row's own uniforms, until every row has stopped.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        reason = unsupported(model)
        if reason is not None:
            raise ValueError(f"fast decoding cannot run this model: {reason}")
        self.model = model
        body = model.transformer
        self.wte, self.wpe, self.blocks, self.ln_f = body.wte, body.wpe, list(body.h), body.ln_f
        self.lm_head = model.lm_head
        self.heads = model.config.n_head
        self.head_dim = model.config.n_embd // self.heads
        self.scaling = [float(b.attn.scaling) for b in self.blocks]

    def _attention(self, i: int, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int,
                   mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """Layer i's self-attention for the `q` new positions in `hidden` [B, q, D]: their keys and values are
        written at [start, start + q) of the layer's cache, and they attend to [0, start + q)."""
        block = self.blocks[i]
        b, q, _ = hidden.shape
        query, key, value = block.attn.c_attn(hidden).split(block.attn.split_size, dim=2)
        keys[:, :, start:start + q] = key.view(b, q, -1, self.head_dim).transpose(1, 2)
        values[:, :, start:start + q] = value.view(b, q, -1, self.head_dim).transpose(1, 2)
        query = query.view(b, q, -1, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, keys[:, :, :start + q], values[:, :, :start + q],
                                             attn_mask=mask, dropout_p=0.0, scale=self.scaling[i], is_causal=causal)
        out = out.reshape(b, -1, q, self.head_dim).transpose(1, 2).contiguous()
        return block.attn.c_proj(out.reshape(b, q, -1).contiguous())

    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor, caches: list[tuple[torch.Tensor, torch.Tensor]],
                 start: int, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """Logits [B, V] of the last of the new positions (the model's dtype, as `lm_head` gives them)."""
        hidden = self.wte(tokens) + self.wpe(positions)
        for i, block in enumerate(self.blocks):
            attn = self._attention(i, block.ln_1(hidden), *caches[i], start, mask, causal)
            hidden = attn + hidden
            hidden = hidden + block.mlp(block.ln_2(hidden))
        hidden = self.ln_f(hidden)
        return self.lm_head(hidden[:, -1:, :])[:, -1, :]

    def decode(self, ids: torch.Tensor, mask: torch.Tensor, uniforms: torch.Tensor, steps: int,
               sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], stop: Callable[..., torch.Tensor],
               pad_id: int, sync_every: int = 1) -> torch.Tensor:
        """Tokens [B, steps] (pad after a row stops) for left-padded `ids` [B, W] with `mask` (1 = prompt token).

        `sample(logits, uniforms_t)` draws one token per row; `stop(token, done, started)` returns the new
        (done, started). Rows are checked for all-done every `sync_every` steps (a host sync on an accelerator;
        steps run past the last row's stop only emit pad, so the output does not depend on it).
        """
        n, width = ids.shape
        device, dtype = ids.device, self.wte.weight.dtype
        total = width + steps
        caches = [(torch.empty(n, self.heads, total, self.head_dim, device=device, dtype=dtype),
                   torch.empty(n, self.heads, total, self.head_dim, device=device, dtype=dtype))
                  for _ in self.blocks]
        valid = torch.ones(n, total, dtype=torch.bool, device=device)
        valid[:, :width] = mask.bool()
        # Hugging Face drops the mask (sdpa's own causal flag) when no row is padded: do the same, same kernels
        padded = not bool(valid[:, :width].all())
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        if padded:
            causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
            prefill_mask = (causal[None, None] & valid[:, None, None, :width]).expand(n, 1, width, width)
        else:
            prefill_mask = None
        logits = self._forward(ids, positions, caches, 0, prefill_mask, prefill_mask is None and width > 1)
        out = torch.full((n, steps), pad_id, dtype=torch.long, device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        started = torch.zeros(n, dtype=torch.bool, device=device)
        step_pos = positions[:, -1:]
        for t in range(steps):
            token = sample(logits.float(), uniforms[:, t])
            token = torch.where(done, torch.full_like(token, pad_id), token)
            out[:, t] = token
            done, started = stop(token, done, started)
            if t == steps - 1 or ((t + 1) % sync_every == 0 and bool(done.all())):
                break
            step_pos = step_pos + 1
            length = width + t + 1
            step_mask = valid[:, None, None, :length] if padded else None
            logits = self._forward(token.unsqueeze(-1), step_pos, caches, width + t, step_mask, False)
        return out
