#!/bin/bash
# Background training of the shipped shapes32 model; rerun to resume from the newest checkpoint in
# runs/shapes32/checkpoints (the newest one is committed so a fresh clone resumes too).
set -e
cd "$(dirname "$0")/.."
[ -f runs/data/shapes_train_40k.parquet ] || \
  .venv/bin/llmgan data shapes --n 40000 --out runs/data/shapes_train_40k.parquet --seed 0 --split train
mkdir -p runs/shapes32
OMP_WAIT_POLICY=PASSIVE nohup .venv/bin/llmgan train --local --data runs/data/shapes_train_40k.parquet \
  --out runs/shapes32 --steps 60000 --checkpoint-every 500 --sample-every 500 --eval-every 500 --threads 2 \
  >> runs/shapes32/train.log 2>&1 &
echo $! > runs/shapes32/train.pid
