"""Training checkpoints: writing them atomically, reading them (or a shipped model as one),
the RNG states they carry, and the model of a checkpoint (load_model)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from fastcodec.models.codec_model import CodecModel
from fastcodec.train.data import CropSampler
from fastcodec.train.options import TrainError


def rng_state(sampler: CropSampler) -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "sampler": sampler.state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, sampler: CropSampler) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    sampler.set_state(state["sampler"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except Exception:  # different device count: keep the fresh states
            pass


def save_checkpoint(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees a half-written latest.pt


def load_checkpoint(path) -> dict:
    """A training checkpoint (of ``fastcodec train`` or ``python -m fastcodec.models.slim``), or
    a shipped model (a weights file, or the id of an installed one such as ``fcf96-v6``) as a
    weights-only checkpoint at the step it was exported from; TrainError for anything else."""
    path = _installed_weights(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise TrainError(f"no checkpoint {path}") from None
    except Exception as exc:  # truncated, not a torch file, ...
        raise TrainError(f"{path} is not a readable checkpoint: {exc}") from None
    if isinstance(ckpt, dict) and ckpt.get("format") == "fastcodec-weights":
        ckpt = _checkpoint_of_weights(ckpt, path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise TrainError(f"{path} is not a fastcodec training checkpoint or weights file")
    return ckpt


def _installed_weights(path):
    """``path`` itself, or the weights file of the installed model it names when no such file
    exists (``--resume fcf96-v6``)."""
    if path is None or Path(path).exists():
        return path
    from fastcodec import zoo

    if str(path) in zoo.available_models():
        return zoo.weights_path(str(path))
    return path


def _checkpoint_of_weights(weights: dict, path) -> dict:
    """A shipped weights file as a weights-only checkpoint: its (EMA) weights as the model,
    its step and lineage, so that training and exports continue the count."""
    meta = weights.get("metadata") or {}
    if "state_dict" not in weights or "model_config" not in weights:
        raise TrainError(f"{path} is a damaged weights file (no state_dict or model_config)")
    return {
        "model": weights["state_dict"],
        "model_config": dict(weights["model_config"]),
        "step": max(0, int(meta.get("step", 0))),
        "lineage": [dict(e) for e in meta.get("lineage", [])],
        "from_weights": weights.get("model_id"),
    }


def load_model(path, device="cpu", ema: bool = True) -> CodecModel:
    """The model of a training checkpoint, in eval mode (its weight average when it has one
    and ``ema``)."""
    ckpt = load_checkpoint(path)
    model = CodecModel.from_config(ckpt["model_config"])
    model.load_state_dict(ckpt["ema"] if ema and ckpt.get("ema") else ckpt["model"])
    return model.to(device).eval()
