"""Training of the learned codec (``python -m fastcodec.train`` or ``fastcodec train``).

One model learns every quality at once: each sample of a batch draws a quality index ``k`` and
is trained with ``lambda_k * 255^2 * MSE + bpp`` (bpp from the likelihoods of the noisy latent);
the entropy model's quantiles are fitted at the same time by the auxiliary loss (its own Adam).

* Data: every PNG/JPEG under ``--data`` is decoded once into memory; batches are random
  ``--crop`` crops with random horizontal flips, drawn from a seeded generator (per rank).
* Devices: fp32 on CPU by default (``--amp bf16`` autocasts the transforms to bf16: about 3x
  faster on CPUs with AMX / AVX512-BF16, slower elsewhere); on CUDA autocast (bf16 by default,
  fp16 with a GradScaler) unless ``--amp none``. Activations are channels-last on CPU (oneDNN's
  fast layout) and contiguous on CUDA unless ``--memory-format`` says otherwise. Under
  ``torchrun`` (``LOCAL_RANK`` set) the model is wrapped in DistributedDataParallel, every rank
  draws its own crops and rank 0 logs and checkpoints.
* Output folder ``--out``: ``log.jsonl`` (one JSON object per progress line and validation),
  ``latest.pt`` (written atomically every ``--ckpt-every`` steps, every
  ``--ckpt-every-minutes`` minutes, at the end and on SIGINT/SIGTERM), ``step_XXXXXXXX.pt``
  snapshots every ``--keep-every`` steps. A checkpoint holds the model (and its config), the
  exponential moving average of its weights (``--ema-decay``; validated and exported), both
  optimizers, the scaler, the step, the RNG states and the arguments; ``--resume PATH`` (or
  ``--resume auto`` = ``OUT/latest.pt`` when it exists) continues from it. On resume the model
  config comes from the checkpoint (model options that contradict it are an error); the other
  arguments (steps, learning rate, ...) from the command line. A checkpoint with weights only
  (``model``, ``ema``, ``model_config``, as :mod:`fastcodec.models.slim` writes) starts fresh
  optimizers and RNG streams, and ``--warmup`` counts from its step. So does a shipped model:
  ``--resume fcf96-v6`` (an installed model id, or a weights file's path) continues training
  from its weights at the step it was exported from.
* Bad input (missing or empty folders, a crop that is not a multiple of 16, validation images
  smaller than ``--val-crop``, a file that is not a training checkpoint) is a one-line error
  (exit status 2) before anything is written.
* Validation (``--val``, every ``--val-every`` steps): centre crops of the validation images,
  bpp (from the likelihoods of the rounded latent) and PSNR for every quality.

Modules: :mod:`.options` (the parser, the model config, TrainError), :mod:`.checks` (the usage
checks), :mod:`.data` (images and crops), :mod:`.validation`, :mod:`.checkpoints` (with
``load_model``), :mod:`.schedule` (learning rate, fast and frozen parameters, revived channels)
and :mod:`.loop` (``run``, the training loop).
"""

from __future__ import annotations

import sys
from typing import List, Optional

from fastcodec.train.loop import run
from fastcodec.train.options import TrainError, build_parser

__all__ = ["TrainError", "build_parser", "main", "run"]


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except TrainError as exc:
        print(f"fastcodec train: error: {exc}", file=sys.stderr)
        return 2
    return 0
