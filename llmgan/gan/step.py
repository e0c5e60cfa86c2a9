"""The one GAN training step (D update with mismatch, contrastive and lazy R1 terms, then G update, then EMA).

Shared by the single-process loop and the Ray Train workers: G and D may be DDP-wrapped by the caller, so
they are only called (never reached into); every D head comes out of one forward call.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from llmgan.gan.augment import augment
from llmgan.gan.config import GanConfig
from llmgan.gan.losses import contrastive, d_cond_hinge, d_hinge, r1_penalty, same_caption
from llmgan.gan.networks import Discriminator, Generator


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP (or similar) wrapper."""
    return getattr(module, "module", module)


@dataclass
class TrainState:
    """Everything a training step touches. `step` counts completed steps."""

    config: GanConfig
    G: nn.Module
    D: nn.Module
    G_ema: Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0


def make_train_state(config: GanConfig, device: str | torch.device = "cpu", seed: int = 0) -> TrainState:
    """Fresh networks (initialised from `seed`) and Adam optimisers with the config's betas and learning rates."""
    torch.manual_seed(seed)
    G = Generator(config).to(device)
    D = Discriminator(config).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=betas)
    return TrainState(config, G, D, G_ema, opt_g, opt_d)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model (parameters and buffers)."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def ema_decay_at(config: GanConfig, step: int) -> float:
    # ramp up so the average is not dominated by the random initialisation early on
    return min(config.ema_decay, (1.0 + step) / (10.0 + step))


def train_step(
    state: TrainState, images: torch.Tensor, emb: torch.Tensor, step: int, pool: torch.Tensor | None = None
) -> dict[str, float]:
    """One D update and one G update on a batch; returns scalar metrics.

    images (N, 3, S, S) float in [-1, 1]; emb (N, E) caption embeddings; step is the global step number
    (decides lazy R1). pool (M, E): optional other dataset captions, extra contrastive negatives (used when
    config.contrastive_pool > 0). The caller advances `state.step`.
    """
    cfg = state.config
    G, D = state.G, state.D
    G.train()
    D.train()
    n = images.shape[0]
    z = torch.randn(n, cfg.z_dim, device=images.device)
    wrong = emb.roll(1, dims=0)  # each image paired with its neighbour's caption
    wrong_valid = ~same_caption(emb, wrong).diagonal()  # skip pairs whose captions are identical
    same = same_caption(emb, emb)  # (N, N) which pairs are not negatives of each other
    use_pool = pool is not None and cfg.contrastive_pool > 0 and cfg.contrastive_weight > 0
    pool_same = same_caption(emb, pool) if use_pool else None  # (N, M)

    # G runs once; D's step sees the detached fakes, G's step backpropagates through the same fakes.
    fake = G(z, emb)  # (N, 3, S, S)

    # ---- D update: hinge (uncond), hinge + mismatch (cond), contrastive on reals, lazy R1 -----------------
    do_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0
    real = images.detach().requires_grad_(do_r1)
    both = augment(torch.cat([real, fake.detach()]), cfg)  # (2N, 3, S, S) one pass for reals and fakes
    out = D(both, torch.cat([emb, emb]), torch.cat([wrong, wrong]), pool if use_pool else None)
    loss_uncond = d_hinge(out.uncond[:n], out.uncond[n:])
    loss_cond = d_cond_hinge(out.cond[:n], out.cond[n:], out.cond_wrong[:n], wrong_valid, cfg.mismatch_weight)
    loss_d = loss_uncond + loss_cond
    metrics: dict[str, float] = {}
    if cfg.contrastive_weight > 0:
        loss_con_d = contrastive(
            out.image_vec[:n], out.text_vec[:n], same, cfg.contrastive_temperature, out.pool_vec, pool_same
        )
        loss_d = loss_d + cfg.contrastive_weight * loss_con_d
        metrics["d_contrastive"] = loss_con_d.item()
    if do_r1:
        penalty = r1_penalty(out.uncond[:n] + out.cond[:n], real)
        loss_d = loss_d + 0.5 * cfg.r1_gamma * cfg.r1_every * penalty
        metrics["r1"] = penalty.item()
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    state.opt_d.step()

    # ---- G update: fool both D terms, match the caption under D's contrastive head -------------------------
    out_g = D(augment(fake, cfg), emb, None, pool if use_pool else None)
    loss_adv = -(out_g.uncond + out_g.cond).mean()
    loss_g = loss_adv
    if cfg.contrastive_weight > 0:
        loss_con_g = contrastive(
            out_g.image_vec, out_g.text_vec, same, cfg.contrastive_temperature, out_g.pool_vec, pool_same
        )
        loss_g = loss_g + cfg.contrastive_weight * loss_con_g
        metrics["g_contrastive"] = loss_con_g.item()
    state.opt_g.zero_grad(set_to_none=True)
    state.opt_d.zero_grad(set_to_none=True)  # drop the D grads this pass left behind
    loss_g.backward()
    state.opt_g.step()
    state.opt_d.zero_grad(set_to_none=True)

    update_ema(state.G_ema, unwrap(G), ema_decay_at(cfg, step))

    with torch.no_grad():
        # D's full score (both heads, what G is trained against) on the batch's reals and fakes: how far D is
        # ahead (llmgan.gan.health flags a D that wins by a wide margin for several rows)
        score_real, score_fake = out.uncond[:n] + out.cond[:n], out.uncond[n:] + out.cond[n:]
        metrics.update(
            d_real_score=score_real.mean().item(),
            d_fake_score=score_fake.mean().item(),
            d_acc=0.5 * ((score_real > 0).float().mean() + (score_fake < 0).float().mean()).item(),
            loss_d=loss_d.item(),
            loss_d_uncond=loss_uncond.item(),
            loss_d_cond=loss_cond.item(),
            loss_g=loss_g.item(),
            loss_g_adv=loss_adv.item(),
            d_real=out.cond[:n].mean().item(),
            d_fake=out.cond[n:].mean().item(),
            d_wrong=out.cond_wrong[:n][wrong_valid].mean().item() if bool(wrong_valid.any()) else float("nan"),
        )
    return metrics
