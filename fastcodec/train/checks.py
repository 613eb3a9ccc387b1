"""The usage checks made before training writes anything: option values, the image folders,
the checkpoint to resume and the model options that contradict it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import torch

from fastcodec.train.checkpoints import load_checkpoint
from fastcodec.train.data import IMAGE_SUFFIXES, list_images
from fastcodec.train.options import TrainError, build_parser, model_config


def _model_flag_conflicts(args, config: dict) -> List[str]:
    """Model options given on the command line (not at their defaults) that differ from a
    resumed checkpoint's ``config``: the checkpoint's architecture is the one that trains."""
    defaults = build_parser()

    def norm(v):
        return list(v) if isinstance(v, (list, tuple)) else v

    conflicts = []
    for key, value in model_config(args).items():
        if key not in config or norm(value) == norm(defaults.get_default(key)):
            continue
        if norm(value) != norm(config[key]):
            conflicts.append(f"--{key.replace('_', '-')} {value} (checkpoint: {config[key]})")
    return conflicts


def _check_numbers(args) -> None:
    """Option values no run can use: the crop, the average's decay, the revive schedule and
    fp16 autocast off CUDA."""
    if args.crop % 16 or args.crop < 16:
        raise TrainError(f"--crop must be a positive multiple of 16, got {args.crop}")
    if not 0.0 <= args.ema_decay < 1.0:
        raise TrainError(f"--ema-decay must be in [0, 1), got {args.ema_decay}")
    for name in ("revive_hold", "revive_ramp"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise TrainError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if args.amp == "fp16":
        on_cuda = args.device.startswith("cuda") or (args.device == "auto"
                                                      and torch.cuda.is_available())
        if not on_cuda:
            raise TrainError("--amp fp16 is for CUDA; on CPU use bf16 or none")


def check_inputs(args) -> Tuple[List[Path], Optional[dict], Optional[str]]:
    """Usage errors before anything is written (TrainError): option values, the image folders,
    the checkpoint and model options that contradict it. Returns (training image paths, the
    checkpoint or None, its path or None)."""
    _check_numbers(args)
    try:
        paths = list_images(args.data)
        if args.val:
            list_images(args.val)
    except FileNotFoundError as exc:
        raise TrainError(str(exc)) from None
    if not paths:
        raise TrainError(f"no training images ({', '.join(sorted(IMAGE_SUFFIXES))}) in "
                         f"{args.data}")
    if args.max_images:
        paths = paths[: args.max_images]
    resume = args.resume
    if resume == "auto":
        latest = Path(args.out) / "latest.pt"
        resume = str(latest) if latest.exists() else None
    ckpt = load_checkpoint(resume) if resume else None
    if ckpt:
        conflicts = _model_flag_conflicts(args, ckpt["model_config"])
        if conflicts:
            raise TrainError("a resumed run keeps its checkpoint's architecture; these options "
                             "contradict it: " + ", ".join(conflicts) + " (widen or narrow a "
                             "model with python -m fastcodec.models.slim)")
    return paths, ckpt, resume
