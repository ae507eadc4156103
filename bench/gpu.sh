#!/usr/bin/env bash
# The open issues' GPU settings as one device command of at most ~9 minutes (never run yet: no GPU was lent).
#
# Here, before the call:  mkdir -p .gpu-data && cp -r ../shared/data/cifar10/{train,test} .gpu-data/
# Device call:            command "bash bench/gpu.sh", carry [".gpu-data"], timeout_s 600; results in $OUT.
#
# Issue 19 (Condense II): sre2l vs cda at the published recover budget (1,000 iterations, recover_cifar.sh) and
# student recipe (400 epochs, batch 128, AdamW 1e-3, T 30), IPC 10, students ConvNet-3 (width 128) and ResNet-20,
# 3 runs, DM 2,000 iterations as the Condense I row. It needs torch, numpy, tqdm and safetensors, which the device
# image has. The synth parts (issues 20, 22) need diffusers and datasets, which it lacks: carry their wheels
# (.library/device/README.md) before adding `bench/synth.py --size gpu` here.
set -u
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
PYTHONPATH=. timeout 540 $PY bench/condense.py --sre2l --ipc 10 --iterations 1000 --kd-epochs 400 --width 128 \
    --students convnet resnet20-cifar --dm-iterations 2000 --eval-runs 3 --data .gpu-data \
    --checkpoint-dir "$OUT/ckpt" --json "$OUT/sre2l-gpu.json" 2>&1 | tee "$OUT/sre2l-gpu.log"
