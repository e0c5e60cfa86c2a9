"""GAN losses: hinge (with the mismatch term), image-text contrastive (XMC-GAN style), R1 penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def same_caption(emb: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """emb (N, E), other (M, E) -> (N, M) bool: True where two embeddings are (nearly) equal, i.e. the same caption."""
    a = F.normalize(emb, dim=-1)
    b = F.normalize(other, dim=-1)
    return (a @ b.T) > 0.999


def d_hinge(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logit).mean() + F.relu(1.0 + fake_logit).mean()


def d_cond_hinge(
    real: torch.Tensor, fake: torch.Tensor, wrong: torch.Tensor, wrong_valid: torch.Tensor, mismatch_weight: float
) -> torch.Tensor:
    """Conditional term: real+right caption up; fake and real+wrong caption down (DF-GAN weights them 1/2 each).

    `wrong_valid` (N,) bool drops pairs whose "wrong" caption equals the right one.
    """
    loss_real = F.relu(1.0 - real).mean()
    loss_fake = F.relu(1.0 + fake).mean()
    if mismatch_weight == 0 or not bool(wrong_valid.any()):
        return loss_real + loss_fake
    loss_wrong = F.relu(1.0 + wrong[wrong_valid]).mean()
    return loss_real + 0.5 * loss_fake + 0.5 * mismatch_weight * loss_wrong


def contrastive(
    image_vec: torch.Tensor,
    text_vec: torch.Tensor,
    same: torch.Tensor,
    temperature: float,
    pool_vec: torch.Tensor | None = None,
    pool_same: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE over the batch; image i matches text i. Other copies of the same caption are not negatives.

    image_vec, text_vec (N, K) unit vectors; same (N, N) bool from `same_caption`. Optional pool_vec (M, K):
    extra caption vectors that serve as further negatives for the image->text direction (pool_same (N, M)
    masks those equal to the right caption).
    """
    logits = image_vec @ text_vec.T / temperature  # (N, N)
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)
    to_text = logits
    if pool_vec is not None:
        extra = image_vec @ pool_vec.T / temperature  # (N, M)
        if pool_same is not None:
            extra = extra.masked_fill(pool_same, float("-inf"))
        to_text = torch.cat([logits, extra], dim=1)  # (N, N + M)
    return 0.5 * (F.cross_entropy(to_text, target) + F.cross_entropy(logits.T, target))


def r1_penalty(logit: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient norm of D's logit w.r.t. real images (which must require grad)."""
    (grad,) = torch.autograd.grad(logit.sum(), images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
