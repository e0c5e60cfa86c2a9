#!/bin/bash
# From-scratch check of the README's reproduce command (D's residual gains start at 1): resumes runs/shapes32_v2
# from its newest checkpoint; when it reaches step 14000, run the README's `llmgan eval` commands on it.
set -e
cd "$(dirname "$0")/.."
[ -f runs/data/shapes_train_40k.parquet ] || \
  .venv/bin/llmgan data shapes --n 40000 --out runs/data/shapes_train_40k.parquet --seed 0 --split train
mkdir -p runs/shapes32_v2
OMP_WAIT_POLICY=PASSIVE nohup .venv/bin/llmgan train --local --data runs/data/shapes_train_40k.parquet \
  --out runs/shapes32_v2 --steps 14000 --checkpoint-every 500 --sample-every 500 --eval-every 500 --threads 1 \
  >> runs/shapes32_v2/train.log 2>&1 &
echo $! > runs/shapes32_v2/train.pid
