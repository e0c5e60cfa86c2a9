"""Generator and discriminator: DF-GAN-style text modulation, CoordConv spatial inputs, a position-aware conditional D.

Shapes use N = batch, C = channels, S = image side, E = text_dim, Z = z_dim. Images are float in [-1, 1].

Generator:  [z, e] --fc--> (N, C4, 4, 4) --GBlock x log2(S/4)--> (N, g_width, S, S) --to_rgb--> (N, C, S, S)
  C = config.image_channels: 3 (RGB) or 4 (RGBA; transparent pixels are black with alpha 0)
  Every GBlock upsamples x2 and applies two (affine-modulate -> lrelu -> conv) stages; the affine scale and shift
  come from [z, e], and each conv also sees two coordinate maps so "top left" can be drawn top left.
Discriminator: image + coords --stride-2 conv--> (N, d_width, S/2, S/2) --DBlock ...--> (N, C, 4, 4) features
  - unconditional logit: conv4x4 on the features
  - conditional logit: the projected caption tiled over the 4x4 map, concatenated with features + coords, convs
    -> one number that says "this image shows this caption" (also the reranking score)
  - contrastive head: flattened 4x4 features (keeps where things are) -> unit vector, matched against the caption.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from llmgan.gan.config import GanConfig


def coord_maps(n: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n, 2, size, size) x and y coordinates in [-1, 1]."""
    line = torch.linspace(-1.0, 1.0, size, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([xx, yy]).unsqueeze(0).expand(n, -1, -1, -1)


def with_coords(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C + 2, H, W)."""
    return torch.cat([x, coord_maps(x.shape[0], x.shape[-1], x.device, x.dtype)], dim=1)


def _channels(width: int, size: int, image_size: int) -> int:
    # width at full resolution, doubling per halving, capped at 4x width
    return width * min(4, image_size // size)


class Affine(nn.Module):
    """Per-channel scale and shift predicted from the condition vector (DF-GAN's affine transform)."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Sequential(nn.Linear(cond_dim, channels), nn.ReLU(), nn.Linear(channels, channels))
        self.beta = nn.Sequential(nn.Linear(cond_dim, channels), nn.ReLU(), nn.Linear(channels, channels))
        # start as the identity so early training is a plain conv net
        nn.init.zeros_(self.gamma[2].weight)
        nn.init.ones_(self.gamma[2].bias)
        nn.init.zeros_(self.beta[2].weight)
        nn.init.zeros_(self.beta[2].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x (N, C, H, W), cond (N, Z + E)
        return x * self.gamma(cond)[:, :, None, None] + self.beta(cond)[:, :, None, None]


class GBlock(nn.Module):
    """(N, Cin, H, W) -> (N, Cout, 2H, 2W): upsample, then two modulate -> lrelu -> conv stages, plus a shortcut."""

    def __init__(self, cin: int, cout: int, cond_dim: int) -> None:
        super().__init__()
        self.affine1 = Affine(cond_dim, cin)
        self.conv1 = nn.Conv2d(cin + 2, cout, 3, padding=1)
        self.affine2 = Affine(cond_dim, cout)
        self.conv2 = nn.Conv2d(cout + 2, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")  # (N, Cin, 2H, 2W)
        h = self.conv1(with_coords(F.leaky_relu(self.affine1(x, cond), 0.2)))  # (N, Cout, 2H, 2W)
        h = self.conv2(with_coords(F.leaky_relu(self.affine2(h, cond), 0.2)))
        return self.shortcut(x) + h


class Generator(nn.Module):
    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.config = config
        s = config.image_size
        cond_dim = config.z_dim + config.text_dim
        self.c4 = _channels(config.g_width, 4, s)
        self.fc = nn.Linear(cond_dim, self.c4 * 4 * 4)
        blocks = []
        size = 4
        while size < s:
            blocks.append(GBlock(_channels(config.g_width, size, s), _channels(config.g_width, size * 2, s), cond_dim))
            size *= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.Conv2d(config.g_width, config.image_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """z (N, Z), emb (N, E) -> images (N, C, S, S) in [-1, 1]."""
        cond = torch.cat([z, emb], dim=1)  # (N, Z + E)
        x = self.fc(cond).view(-1, self.c4, 4, 4)  # (N, C4, 4, 4)
        for block in self.blocks:
            x = block(x, cond)  # doubles the side each time
        return torch.tanh(self.to_rgb(F.leaky_relu(x, 0.2)))  # (N, C, S, S)


class DBlock(nn.Module):
    """(N, Cin, H, W) -> (N, Cout, H/2, W/2): conv3x3 -> lrelu -> stride-2 conv4x4, with a learned-gain residual."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv2 = nn.Conv2d(cin, cout, 4, stride=2, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1)
        # DF-GAN starts this gain at 0; on CPU budgets it then stayed near 0 (-0.08 after 5,000 steps), leaving D a
        # linear pooling stack that could not tell a star from a disc. Starting at 1 keeps D deep from step one.
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
        return self.shortcut(F.avg_pool2d(x, 2)) + self.gain * h


class DOut(NamedTuple):
    """Everything one D pass produces; all heads come out of forward() so D works under DDP."""

    uncond: torch.Tensor  # (N,) real/fake logit, caption-blind
    cond: torch.Tensor  # (N,) "this image shows this caption" logit; the reranking score
    cond_wrong: torch.Tensor | None  # (N,) the same for wrong_emb (mismatch term), if given
    image_vec: torch.Tensor  # (N, K) unit vectors of the contrastive head
    text_vec: torch.Tensor  # (N, K)
    pool_vec: torch.Tensor | None  # (M, K) for extra negative captions, if given


class Discriminator(nn.Module):
    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.config = config
        s = config.image_size
        # downsample at once: full-resolution convs dominate D's cost on CPU
        self.from_rgb = nn.Conv2d(config.image_channels + 2, _channels(config.d_width, s // 2, s // 2), 4, stride=2, padding=1)
        blocks = []
        size = s // 2
        while size > 4:
            blocks.append(DBlock(_channels(config.d_width, size, s // 2), _channels(config.d_width, size // 2, s // 2)))
            size //= 2
        self.blocks = nn.ModuleList(blocks)
        self.c4 = _channels(config.d_width, 4, s // 2)
        self.uncond = nn.Conv2d(self.c4, 1, 4)  # (N, C4, 4, 4) -> (N, 1, 1, 1)
        self.text_proj = nn.Linear(config.text_dim, config.cond_dim)
        self.cond = nn.Sequential(
            nn.Conv2d(self.c4 + config.cond_dim + 2, self.c4, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(self.c4, 1, 4),
        )
        self.image_embed = nn.Linear(self.c4 * 16, config.contrastive_dim)
        self.text_embed = nn.Linear(config.text_dim, config.contrastive_dim)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, C, S, S) -> features (N, C4, 4, 4)."""
        x = F.leaky_relu(self.from_rgb(with_coords(images)), 0.2)  # (N, d_width, S/2, S/2)
        for block in self.blocks:
            x = block(x)  # halves the side each time
        return F.leaky_relu(x, 0.2)

    def _cond_logit(self, feats: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # the projected caption tiled over the 4x4 map, so the convs can relate "top left" to where the shape is
        e = self.text_proj(emb)[:, :, None, None].expand(-1, -1, 4, 4)  # (N, cond_dim, 4, 4)
        return self.cond(with_coords(torch.cat([feats, e], dim=1))).flatten()  # (N,)

    def forward(
        self,
        images: torch.Tensor,
        emb: torch.Tensor,
        wrong_emb: torch.Tensor | None = None,
        pool_emb: torch.Tensor | None = None,
    ) -> DOut:
        """images (N, C, S, S), emb (N, E), optional wrong_emb (N, E) and pool_emb (M, E) -> DOut."""
        feats = self.features(images)  # (N, C4, 4, 4)
        return DOut(
            uncond=self.uncond(feats).flatten(),
            cond=self._cond_logit(feats, emb),
            cond_wrong=None if wrong_emb is None else self._cond_logit(feats, wrong_emb),
            # flattened, not pooled: the contrastive head must know where things are
            image_vec=F.normalize(self.image_embed(feats.flatten(1)), dim=1),
            text_vec=F.normalize(self.text_embed(emb), dim=1),
            pool_vec=None if pool_emb is None else F.normalize(self.text_embed(pool_emb), dim=1),
        )

