"""GAN vs diffusion: a diffusers UNet and the project's GAN trained for the same CPU time, then images/s and accuracy side by side.

Both models see the same shapes data, the same cached MiniLM caption embeddings (the UNet gets each as a
one-token `encoder_hidden_states`), the same batch size and image size. Training is interleaved in short
slices (GAN slice, diffusion slice, ...) until each has used its wall-clock budget, so both meet the same
load from whatever else runs on the machine. Inference: same batch, same embeddings, uint8 images out;
the diffusion sampler is DDIM with a stated number of steps, with and without classifier-free guidance.
Accuracy is the shipped shapes classifier's joint accuracy (what `llmgan eval` reports) against the labels
of the captions the images were generated from.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from llmgan.errors import UserError
from llmgan.gan.config import GanConfig
from llmgan.gan.inference import default_checkpoint_path
from llmgan.gan.step import ema_decay_at, make_train_state, train_step, update_ema
from llmgan.gan.trainer import batch_indices
from llmgan.io.images import to_float, to_uint8
from llmgan.io.seeds import derive_seed

ATTRIBUTES = ("shape", "color", "size", "position", "background")
TARGET = ">= 20"
COND_DROP = 0.1  # captions replaced by the null (zero) embedding in training, so guidance has something to contrast


def _noise_rows(seeds: Sequence[int], shape: tuple[int, ...]) -> torch.Tensor:
    """Row i drawn from seeds[i] alone: the same image whatever batch it lands in."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s) % 2**63)) for s in seeds])


# ---- data --------------------------------------------------------------------------------------------------


def prepare_data(data: str | None, n: int, work: Path, image_size: int = 32) -> tuple[np.ndarray, torch.Tensor, dict]:
    """(uint8 images (N, S, S, 3), caption embeddings (N, 384), labels) from `data` or n fresh shapes images."""
    from llmgan.data.readers import load_captioned
    from llmgan.data.tables import write_dataset
    from llmgan.domains.shapes.render import generate_shapes
    from llmgan.text.encoder import TextEncoder, embed_dataset_captions, embedding_cache_url

    if data is None:
        data = str(work / f"shapes-{n}.parquet")
        if not Path(data).exists():
            write_dataset(generate_shapes(n, size=image_size, seed=0, split="train"), data)
    dataset = load_captioned(data, image_size, limit=n)
    missing = [a for a in ATTRIBUTES if a not in dataset.labels or not all(dataset.labels[a])]
    if missing:
        raise UserError(f"{data}: the benchmark needs shapes data with label columns; missing {', '.join(missing)}")
    encoder = TextEncoder()
    emb = embed_dataset_captions(dataset.captions, encoder, embedding_cache_url(data, encoder.identity))
    return dataset.images, torch.from_numpy(emb), dataset.labels


# ---- the two contestants --------------------------------------------------------------------------------------


class GanContestant:
    """The project's GAN (default GanConfig), trained with the project's own train_step."""

    name = "GAN"

    def __init__(self, images: np.ndarray, emb: torch.Tensor, config: GanConfig, seed: int) -> None:
        self.images, self.emb, self.seed = images, emb, seed
        self.config = config.replace(text_dim=emb.shape[1])
        self.state = make_train_state(self.config, seed=seed)
        torch.manual_seed(derive_seed(seed, 1))
        self.params = sum(p.numel() for p in self.state.G.parameters())

    @property
    def steps(self) -> int:
        return self.state.step

    def step(self) -> None:
        idx = batch_indices(len(self.images), self.config.batch_size, self.state.step, self.seed)
        train_step(self.state, to_float(self.images[idx]), self.emb[idx], self.state.step)
        self.state.step += 1

    @torch.inference_mode()
    def sample(self, emb: torch.Tensor, seeds: Sequence[int]) -> np.ndarray:
        return to_uint8(self.state.G_ema.eval()(_noise_rows(seeds, (self.config.z_dim,)), emb))


def make_unet(image_size: int, text_dim: int, width: int) -> torch.nn.Module:
    """A small text-conditioned UNet: cross-attention at 1/2 and 1/4 resolution on the caption token."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=image_size, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(width, 2 * width, 2 * width),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=text_dim, attention_head_dim=8, norm_num_groups=8,
    )


class DiffusionContestant:
    """diffusers UNet2DConditionModel, epsilon prediction, cosine schedule, EMA, DDIM sampling (+ optional CFG)."""

    name = "diffusion"

    def __init__(self, images: np.ndarray, emb: torch.Tensor, batch_size: int, seed: int, width: int = 32,
                 lr: float = 3e-4, ema_decay: float = 0.999) -> None:
        from diffusers import DDIMScheduler

        self.images, self.emb, self.batch_size, self.seed = images, emb, batch_size, seed
        torch.manual_seed(seed)
        self.unet = make_unet(images.shape[1], emb.shape[1], width)
        self.ema = copy.deepcopy(self.unet).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=lr, weight_decay=0.0)
        self.scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                       clip_sample=True, set_alpha_to_one=False, prediction_type="epsilon")
        self.ema_config = GanConfig(ema_decay=ema_decay)  # same EMA ramp as the GAN's
        self.gen = torch.Generator().manual_seed(seed)
        self.steps = 0
        self.params = sum(p.numel() for p in self.unet.parameters())

    def step(self) -> None:
        idx = batch_indices(len(self.images), self.batch_size, self.steps, self.seed)
        x0 = to_float(self.images[idx])
        cond = self.emb[idx].clone()
        cond[torch.rand(len(idx), generator=self.gen) < COND_DROP] = 0.0
        noise = torch.randn(x0.shape, generator=self.gen)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(idx),), generator=self.gen)
        self.unet.train()
        pred = self.unet(self.scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=cond[:, None, :]).sample
        loss = F.mse_loss(pred, noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        update_ema(self.ema, self.unet, ema_decay_at(self.ema_config, self.steps))
        self.steps += 1

    @torch.inference_mode()
    def sample(self, emb: torch.Tensor, seeds: Sequence[int], steps: int, guidance: float = 1.0) -> np.ndarray:
        """DDIM (eta 0) in `steps` UNet calls; guidance > 1 runs conditional and null rows in one batch."""
        self.scheduler.set_timesteps(steps)
        side = self.images.shape[1]
        x = _noise_rows(seeds, (3, side, side))
        cond = emb[:, None, :]
        if guidance != 1.0:
            cond = torch.cat([cond, torch.zeros_like(cond)])
        for t in self.scheduler.timesteps:
            if guidance != 1.0:
                eps_c, eps_u = self.ema(torch.cat([x, x]), t, encoder_hidden_states=cond).sample.chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            else:
                eps = self.ema(x, t, encoder_hidden_states=cond).sample
            x = self.scheduler.step(eps, t, x).prev_sample
        return to_uint8(x)


# ---- measurement -------------------------------------------------------------------------------------------


def train_interleaved(contestants: Sequence[Any], budget_s: float, slice_s: float,
                      log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """Train each contestant for budget_s of wall time, alternating slices of slice_s; returns time used per name."""
    used = {c.name: {"wall_s": 0.0, "cpu_s": 0.0} for c in contestants}
    while any(used[c.name]["wall_s"] < budget_s for c in contestants):
        for c in contestants:
            u = used[c.name]
            end = min(slice_s, budget_s - u["wall_s"])
            if end <= 0:
                continue
            w0, c0 = time.perf_counter(), time.process_time()
            while time.perf_counter() - w0 < end:
                c.step()
            u["wall_s"] += time.perf_counter() - w0
            u["cpu_s"] += time.process_time() - c0
        log("  trained " + ", ".join(f"{c.name} {c.steps} steps ({used[c.name]['wall_s']:.0f}s)" for c in contestants))
    return {k: {kk: round(vv, 1) for kk, vv in v.items()} for k, v in used.items()}


def generate_side_by_side(fns: dict[str, Callable[[torch.Tensor, list[int]], np.ndarray]], emb: torch.Tensor,
                          seeds: list[int], batch: int) -> dict[str, tuple[np.ndarray, float]]:
    """name -> (images, images/s). Batch i of every model runs back to back (so all meet the same machine load);
    images/s is batch / the median full-batch time, after one warm-up batch each."""
    for fn in fns.values():
        fn(emb[:batch], seeds[:batch])  # warm-up: first-call allocations are not throughput
    times: dict[str, list[float]] = {k: [] for k in fns}
    out: dict[str, list[np.ndarray]] = {k: [] for k in fns}
    for i in range(0, len(seeds), batch):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            images = fn(emb[i:i + batch], seeds[i:i + batch])
            if len(images) == batch:
                times[name].append(time.perf_counter() - t0)
            out[name].append(images)
    if not all(times.values()):
        raise UserError(f"need at least one full batch of {batch} evaluation images")
    return {k: (np.concatenate(out[k]), batch / statistics.median(times[k])) for k in fns}


def _accuracy(clf: Any, images: np.ndarray, labels: dict[str, list[str]]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in clf.accuracy(images, labels).items()}


def run(quick: bool, budget_s: float | None = None, *, data: str | None = None, work: str | None = None,
        n_data: int | None = None, n_eval: int | None = None, sampling_steps: int | None = None,
        guidance: float = 3.0, batch_size: int = 32, sample_batch: int = 64, slice_s: float = 30.0,
        unet_width: int = 32, seed: int = 0, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train both models for `budget_s` each (quick: 5 s, else 600 s), then compare; returns the figures.

    The default UNet width (32) gives it about as many parameters as the GAN's generator (~2M each).
    """
    from llmgan.eval.classifier import load_classifier

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    budget_s = float(budget_s if budget_s is not None else (5 if quick else 600))
    n_data = n_data or (256 if quick else 20_000)
    n_eval = n_eval or (min(sample_batch, 32) if quick else 512)
    sampling_steps = sampling_steps or (4 if quick else 20)
    if quick:
        sample_batch = min(sample_batch, 32)
    for name, value in (("budget_s", budget_s), ("n_eval", n_eval), ("sampling_steps", sampling_steps)):
        if value <= 0:
            raise UserError(f"{name} must be positive, got {value}")
    if n_eval < sample_batch:
        raise UserError(f"n_eval ({n_eval}) must be at least sample_batch ({sample_batch})")
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    work_dir = Path(work or tempfile.mkdtemp(prefix="llmgan-diffusion-"))
    work_dir.mkdir(parents=True, exist_ok=True)

    log(f"data: {data or f'{n_data} fresh shapes images'} (embeddings cached in the cache folder)")
    images, emb, labels = prepare_data(data, n_data, work_dir)
    config = GanConfig(batch_size=batch_size)
    gan = GanContestant(images, emb, config, seed)
    diff = DiffusionContestant(images, emb, batch_size, seed, width=unet_width)
    log(f"training GAN ({gan.params / 1e6:.2f}M params in G) and UNet ({diff.params / 1e6:.2f}M) for "
        f"{budget_s:.0f}s each, interleaved in {min(slice_s, budget_s):.0f}s slices")
    used = train_interleaved([gan, diff], budget_s, min(slice_s, budget_s), log)

    clf = load_classifier(None)
    rows = np.random.default_rng([seed, 11]).choice(len(images), size=min(n_eval, len(images)), replace=False)
    e_emb = emb[rows]
    e_labels = {a: [labels[a][i] for i in rows] for a in ATTRIBUTES}
    seeds = [derive_seed(seed, 3, i) for i in range(len(rows))]
    log(f"sampling {len(rows)} images per model (batch {sample_batch}; DDIM {sampling_steps} steps)")
    fns = {"gan": gan.sample, "diffusion": lambda e, s: diff.sample(e, s, sampling_steps),
           "diffusion_cfg": lambda e, s: diff.sample(e, s, sampling_steps, guidance)}
    shipped = _shipped_model()
    if shipped is not None:
        fns["shipped"] = lambda e, s: shipped.generate(e, shipped.noise(s))
    res = generate_side_by_side(fns, e_emb, seeds, sample_batch)
    (gan_imgs, gan_ips), (d_imgs, d_ips), (g_imgs, g_ips) = res["gan"], res["diffusion"], res["diffusion_cfg"]
    acc = {"gan": _accuracy(clf, gan_imgs, e_labels), "diffusion": _accuracy(clf, d_imgs, e_labels),
           "diffusion_cfg": _accuracy(clf, g_imgs, e_labels)}
    out: dict[str, Any] = {
        "ratio": round(gan_ips / d_ips, 1),
        "target": TARGET,
        "ratio_vs_cfg": round(gan_ips / g_ips, 1),
        "gan_images_per_s": round(gan_ips, 1),
        "diffusion_images_per_s": round(d_ips, 2),
        "diffusion_cfg_images_per_s": round(g_ips, 2),
        "gan_joint_accuracy": acc["gan"]["joint"],
        "diffusion_joint_accuracy": acc["diffusion"]["joint"],
        "diffusion_cfg_joint_accuracy": acc["diffusion_cfg"]["joint"],
        "accuracy_ok": acc["gan"]["joint"] >= max(acc["diffusion"]["joint"], acc["diffusion_cfg"]["joint"]),
        "budget_s": budget_s,
        "gan_train_s": used["GAN"]["wall_s"], "diffusion_train_s": used["diffusion"]["wall_s"],
        "gan_cpu_s": used["GAN"]["cpu_s"], "diffusion_cpu_s": used["diffusion"]["cpu_s"],
        "gan_steps": gan.steps, "diffusion_steps": diff.steps,
        "gan_params": gan.params, "unet_params": diff.params,
        "batch_size": batch_size, "sample_batch": sample_batch, "image_size": int(images.shape[1]),
        "sampler": "DDIM", "sampling_steps": sampling_steps, "guidance": guidance,
        "eval_images": len(rows), "train_images": len(images), "threads": threads,
        "accuracy": acc,
    }
    if shipped is None:
        out["shipped_gan"] = "not present"
    else:  # trained far longer: NOT an equal-budget contestant
        acc_s = _accuracy(clf, res["shipped"][0], e_labels)
        out.update(shipped_gan=f"not equal budget: step {shipped.meta.get('step', '?')}",
                   shipped_gan_images_per_s=round(res["shipped"][1], 1), shipped_gan_joint_accuracy=acc_s["joint"],
                   shipped_gan_accuracy=acc_s)
    return out


def _shipped_model() -> Any:
    """The GAN the package ships (trained far longer than the budget here), or None when it has none."""
    path = default_checkpoint_path()
    if not Path(path, "config.json").exists():
        return None
    from llmgan.gan.inference import GanModel

    return GanModel.load(path)


def table(fig: dict[str, Any]) -> str:
    """Markdown table of the side-by-side figures."""
    d_label = f"diffusion (DDIM {fig['sampling_steps']})"
    g_label = f"diffusion (DDIM {fig['sampling_steps']}, CFG {fig['guidance']})"
    cols = [("GAN (equal budget)", fig["gan_images_per_s"], fig["accuracy"]["gan"], fig["gan_steps"]),
            (d_label, fig["diffusion_images_per_s"], fig["accuracy"]["diffusion"], fig["diffusion_steps"]),
            (g_label, fig["diffusion_cfg_images_per_s"], fig["accuracy"]["diffusion_cfg"], fig["diffusion_steps"])]
    if "shipped_gan_images_per_s" in fig:
        cols.append((f"shipped GAN ({fig['shipped_gan']})", fig["shipped_gan_images_per_s"],
                     fig["shipped_gan_accuracy"], "-"))
    lines = ["| model | train steps | images/s | joint | " + " | ".join(ATTRIBUTES) + " |",
             "| --- " * (4 + len(ATTRIBUTES)) + "|"]
    for name, ips, acc, steps in cols:
        lines.append(f"| {name} | {steps} | {ips} | {acc['joint']:.3f} | "
                     + " | ".join(f"{acc[a]:.3f}" for a in ATTRIBUTES) + " |")
    lines.append(f"\nGAN / diffusion images/s: {fig['ratio']}x (with CFG: {fig['ratio_vs_cfg']}x), target "
                 f"{fig['target']}; budget {fig['budget_s']:.0f}s each (GAN {fig['gan_cpu_s']} CPU-s, diffusion "
                 f"{fig['diffusion_cpu_s']} CPU-s); batch {fig['sample_batch']}, {fig['image_size']} px, "
                 f"{fig['threads']} threads")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diffusion", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: proves the code path in ~2 minutes")
    parser.add_argument("--budget-s", type=float, default=None, help="training seconds per model (default 600)")
    parser.add_argument("--data", default=None, help="shapes dataset to train on (default: fresh shapes images)")
    parser.add_argument("--n-eval", type=int, default=None, help="images sampled per model for accuracy")
    parser.add_argument("--steps", type=int, default=None, help="DDIM sampling steps (default 20)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        fig = run(args.quick, args.budget_s, data=args.data, n_eval=args.n_eval, sampling_steps=args.steps)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.out:
        from llmgan.io.storage import Storage

        Storage().write_text(args.out, json.dumps(fig, indent=1) + "\n")
    print(table(fig))


if __name__ == "__main__":
    main()
