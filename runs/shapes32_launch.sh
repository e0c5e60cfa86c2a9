#!/bin/bash
# Background training of the shipped shapes32 model with the README's command; rerun to resume from the newest
# checkpoint in runs/shapes32/checkpoints (step 14000, the shipped one, is committed so a fresh clone resumes too).
# Older runs kept for their metrics: runs/shapes32_gain0 (D's residual gains started at 0) and runs/shapes32_dg
# (continued from its step 5000 with the gains set to 1 by runs/dgain_exp.py; shipped before this run replaced it).
set -e
cd "$(dirname "$0")/.."
[ -f runs/data/shapes_train_40k.parquet ] || \
  .venv/bin/llmgan data shapes --n 40000 --out runs/data/shapes_train_40k.parquet --seed 0 --split train
mkdir -p runs/shapes32
OMP_WAIT_POLICY=PASSIVE nohup .venv/bin/llmgan train --local --data runs/data/shapes_train_40k.parquet \
  --out runs/shapes32 --steps 14000 --checkpoint-every 500 --sample-every 500 --eval-every 500 --threads 1 \
  >> runs/shapes32/train.log 2>&1 &
echo $! > runs/shapes32/train.pid
