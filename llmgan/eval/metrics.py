"""Image-set figures as pure functions: Fréchet distance, Inception-Score-style score, SSIM, pairwise diversity.

Inputs are numpy arrays; nothing here knows about GANs, files or classifiers, so each figure is tested on
inputs whose answer is known (identical sets -> FD 0, SSIM(x, x) = 1, ...).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 11  # Wang et al. 2004: 11x11 gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues clipped)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between gaussians fitted to two feature sets (N, D) and (M, D), as in FID.

    ||mu_a - mu_b||^2 + Tr(Ca + Cb - 2 (Ca^1/2 Cb Ca^1/2)^1/2); the symmetric form avoids a
    non-symmetric matrix square root, so it is stable without scipy.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each feature set needs at least 2 rows")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    sa = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(sa @ cov_b @ sa), 0, None)).sum()
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
    return max(fd, 0.0)


def inception_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """exp(mean_x KL(p(y|x) || p(y))) for class probabilities (N, C): 1 = no information, C = ideal."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probabilities must be a non-empty (N, C) array, got shape {p.shape}")
    p = p / p.sum(axis=1, keepdims=True)
    marginal = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


def _gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _as_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) or (H, W, C) in 0..255 -> float32 (N, C, H, W) in 0..1 (float64 convs are slow)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C) or (H, W, C), got shape {x.shape}")
    t = torch.from_numpy(x.astype(np.float32))
    if np.issubdtype(x.dtype, np.integer):
        t = t / 255.0
    return t.permute(0, 3, 1, 2)


def ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM of each pair (x[i], y[i]) with a gaussian window, averaged over pixels and channels: (N,).

    Images are uint8 (0..255) or floats in 0..1, (N, H, W, C) or a single (H, W, C). The window shrinks
    (odd, <= the image side) for images smaller than 11 px; the 'valid' region avoids padding effects.
    """
    a, b = _as_float(x), _as_float(y)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs images of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    n, c, h, w = a.shape
    size = min(SSIM_WINDOW, h, w)
    size -= 1 - size % 2  # odd
    g = _gaussian_1d(size, SSIM_SIGMA * size / SSIM_WINDOW)
    rows, cols = g.view(1, 1, size, 1), g.view(1, 1, 1, size)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable gaussian over each channel, 'valid' region
        flat = t.reshape(n * c, 1, h, w)
        out = F.conv2d(F.conv2d(flat, rows), cols)
        return out.reshape(n, c, *out.shape[-2:])

    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    mu_a, mu_b = blur(a), blur(b)
    # second moments of per-image-centred values: the same (var and cov ignore shifts) without the
    # float32 cancellation of E[x^2] - mu^2 on flat regions
    a0, b0 = a - a.mean(dim=(2, 3), keepdim=True), b - b.mean(dim=(2, 3), keepdim=True)
    m_a, m_b = blur(a0), blur(b0)
    var_a = blur(a0 * a0) - m_a**2
    var_b = blur(b0 * b0) - m_b**2
    cov = blur(a0 * b0) - m_a * m_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean(dim=(1, 2, 3)).double().numpy()


def mean_pairwise_ssim(images: np.ndarray) -> float:
    """Mean SSIM over all unordered pairs of a set (N >= 2); lower = more varied (as AC-GAN's MS-SSIM)."""
    return mean_pairwise_ssim_groups([images])[0]


def mean_pairwise_ssim_groups(groups: list[np.ndarray]) -> list[float]:
    """`mean_pairwise_ssim` of each set, computed in one batched pass (every set needs >= 2 images)."""
    left, right, owner = [], [], []
    for g, images in enumerate(groups):
        images = np.asarray(images)
        if len(images) < 2:
            raise ValueError("mean_pairwise_ssim needs at least 2 images per set")
        i, j = np.triu_indices(len(images), k=1)
        left.append(images[i])
        right.append(images[j])
        owner.append(np.full(len(i), g))
    if not groups:
        return []
    values = ssim(np.concatenate(left), np.concatenate(right))
    who = np.concatenate(owner)
    return [float(values[who == g].mean()) for g in range(len(groups))]


def mean_pairwise_distance(images: np.ndarray) -> float:
    """Mean over unordered pairs of the RMS pixel difference (pixels scaled to 0..1); 0 = all identical."""
    x = np.asarray(images)
    if len(x) < 2:
        raise ValueError("mean_pairwise_distance needs at least 2 images")
    flat = x.reshape(len(x), -1).astype(np.float64)
    if np.issubdtype(x.dtype, np.integer):
        flat /= 255.0
    i, j = np.triu_indices(len(x), k=1)
    return float(np.sqrt(((flat[i] - flat[j]) ** 2).mean(axis=1)).mean())


def psnr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio of each pair (x[i], y[i]) in dB: (N,); inf where a pair is identical.

    Images as in `ssim` (uint8 0..255 or floats in 0..1, data range 1 after scaling); the mean squared
    error is over all pixels and channels of the pair: 10 * log10(1 / MSE).
    """
    a, b = _as_float(x), _as_float(y)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs images of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = (a.double() - b.double()).pow(2).mean(dim=(1, 2, 3)).numpy()
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse)
