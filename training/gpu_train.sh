#!/usr/bin/env bash
# Continue the codec training on a lent GPU machine, inside one device command (<= 10 minutes).
#
#   bash training/gpu_train.sh OUTDIR            # on the device: bash training/gpu_train.sh "$OUT"
#
# Installs fastcodec (editable, no CUDA C++ build: training uses the Triton kernels), resumes from
# RESUME (default: fcf96-v6, the shipped model's weights; or a checkpoint's path), trains until BUDGET_S
# seconds after the start (default 540) and stops with SIGINT, which makes the trainer write
# OUTDIR/latest.pt (model, EMA, optimizers, RNG; resumable anywhere, CPU included). OUTDIR also
# gets log.jsonl, train.log and status.txt. Back on the development machine:
#   cp OUTDIR/latest.pt /work/runs/codec-v6/latest.pt; cat OUTDIR/log.jsonl >> training/codec-v6/log.jsonl
#   python -m fastcodec.zoo export /work/runs/codec-v6/latest.pt --model-id fcf96-v7  # a new id: -> fastcodec/weights/fcf96-v7.pt
#
# The device machine has no ../shared: first pack the images into the checkout's ignored shared/
# (it travels; the whole checkout must stay under 64 MiB): python training/pack_gpu_data.py
# The pack fills what the tree leaves of those 64 MiB: delete shared/ before device runs that
# do not train (benches/gpu_ops.sh), and carry nothing large beside it.
#
# Environment: PYTHON (python3), BUDGET_S (540), RESUME, DATA (../shared/data/train, else
# shared/data/train), VAL (same with val/), and TRAIN_ARGS for more `fastcodec train` options.
# RESUME=none trains a new model from scratch, its architecture in TRAIN_ARGS; the wider one
# training/README.md proposes for higher PSNR:
#   RESUME=none TRAIN_ARGS="--N 96 --M 320 --first-width 32 --head-width 320 --last-width 16 --skip
#     --lambdas 0.0004 0.0013 0.004 0.013 0.04 0.13" bash training/gpu_train.sh "$OUT"
# and later RESUME=OUTDIR/latest.pt (carried back) to continue it.
# Defaults: batch 16 of 256x256 crops, bf16 autocast, lr 1e-4 (the model config comes from the
# checkpoint).
set -uo pipefail
cd "$(dirname "$0")/.."

T0=$SECONDS
BUDGET_S=${BUDGET_S:-540}
PY=${PYTHON:-python3}
out="${1:?usage: training/gpu_train.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
status="$out/status.txt"
: > "$status"
note() { echo "[gpu_train] $*" | tee -a "$status"; }

pick() {  # first existing folder among the arguments
    for d in "$@"; do [ -d "$d" ] && { echo "$d"; return; }; done
    echo "$1"
}
DATA=${DATA:-$(pick ../shared/data/train shared/data/train)}
VAL=${VAL:-$(pick ../shared/data/val shared/data/val)}
RESUME=${RESUME:-fcf96-v6}
[ -d "$DATA" ] || { note "no training images at $DATA (python training/pack_gpu_data.py here first, or set DATA)"; exit 2; }
resume_args=(--resume "$RESUME")
if [ "$RESUME" = none ]; then
    resume_args=()
else
    [ -f "$RESUME" ] || [ -f "fastcodec/weights/$RESUME.pt" ] \
        || { note "no checkpoint or shipped model $RESUME (set RESUME, or RESUME=none)"; exit 2; }
fi

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 2)" \
    || { note "no CUDA device"; exit 2; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$status"

t=$SECONDS
FASTCODEC_CUDA=OFF timeout 240 "$PY" -m pip install -q --no-build-isolation -e . \
    > "$out/build.log" 2>&1
rc=$?
note "install: exit $rc after $((SECONDS - t)) s"
[ $rc -eq 0 ] || exit 1

left=$((BUDGET_S - (SECONDS - T0)))
[ $left -gt 60 ] || { note "only $left s left after the install"; exit 3; }
note "training for $left s from $RESUME (data $DATA, val $VAL)"
# SIGINT at the deadline: the trainer finishes its step and writes latest.pt; KILL 60 s later.
timeout --signal=INT --kill-after=60 "$left" "$PY" -m fastcodec.train \
    --out "$out" "${resume_args[@]}" --data "$DATA" --val "$VAL" \
    --batch-size 16 --crop 256 --lr 1e-4 --amp bf16 --log-every 200 --val-every 5000 \
    --ckpt-every 2000 --ckpt-every-minutes 3 --keep-every 0 ${TRAIN_ARGS:-} \
    > "$out/train.log" 2>&1
rc=$?
note "train: exit $rc (124 or 130 = stopped at the deadline, as planned)"
tail -3 "$out/train.log" | tee -a "$status"
[ -f "$out/latest.pt" ] || { note "no checkpoint written"; exit 1; }
exit 0
