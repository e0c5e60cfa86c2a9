"""Dev experiment: warm-start G (and D) from the main run's step-5000 checkpoint, with D's residual gains set to 1
(they had stayed near -0.08, so D was nearly a linear pooling stack and could not tell shapes apart)."""
import json, shutil, sys, logging
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
logging.basicConfig(level=logging.INFO)
from llmgan.gan.config import GanConfig
from llmgan.gan.local_train import LocalTrainOptions, train_local
src, out = sys.argv[1], Path(sys.argv[2])
if not (out / "checkpoints").exists():
    dst = out / "checkpoints" / Path(src).name
    shutil.copytree(src, dst)
    d = load_file(dst / "discriminator.safetensors")
    for k in d:
        if k.endswith(".gain"):
            d[k] = torch.ones_like(d[k])
    save_file(d, dst / "discriminator.safetensors")
cfg = GanConfig()
print(train_local("runs/data/shapes_train_40k.parquet", str(out), cfg,
                  LocalTrainOptions(steps=60000, checkpoint_every=500, sample_every=500, eval_every=500, threads=1)))
