#!/bin/bash
# Background training of the shipped shapes32 model; rerun to resume from the newest checkpoint in
# runs/shapes32_dg/checkpoints (the newest one is committed so a fresh clone resumes too).
# History: runs/shapes32 trained steps 0-5000 with D's residual gains starting at 0; runs/shapes32_dg continued
# from its step-5000 checkpoint with those gains set to 1 (the default since), see README "The shipped model".
set -e
cd "$(dirname "$0")/.."
[ -f runs/data/shapes_train_40k.parquet ] || \
  .venv/bin/llmgan data shapes --n 40000 --out runs/data/shapes_train_40k.parquet --seed 0 --split train
OMP_WAIT_POLICY=PASSIVE nohup .venv/bin/llmgan train --local --data runs/data/shapes_train_40k.parquet \
  --out runs/shapes32_dg --steps 60000 --checkpoint-every 500 --sample-every 500 --eval-every 500 --threads 1 \
  >> runs/shapes32_dg/train.log 2>&1 &
echo $! > runs/shapes32_dg/train.pid
