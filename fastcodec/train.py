"""Training of the learned codec (``python -m fastcodec.train`` or ``fastcodec train``).

One model learns every quality at once: each sample of a batch draws a quality index ``k`` and
is trained with ``lambda_k * 255^2 * MSE + bpp`` (bpp from the likelihoods of the noisy latent);
the entropy model's quantiles are fitted at the same time by the auxiliary loss (its own Adam).

* Data: every PNG/JPEG under ``--data`` is decoded once into memory; batches are random
  ``--crop`` crops with random horizontal flips, drawn from a seeded generator (per rank).
* Devices: fp32 on CPU by default (``--amp bf16`` autocasts the transforms to bf16: about 3x
  faster on CPUs with AMX / AVX512-BF16, slower elsewhere); on CUDA autocast (bf16 by default,
  fp16 with a GradScaler) unless ``--amp none``. Activations are channels-last on CPU (oneDNN's
  fast layout) and contiguous on CUDA unless ``--memory-format`` says otherwise. Under ``torchrun`` (``LOCAL_RANK`` set) the model is wrapped in
  DistributedDataParallel, every rank draws its own crops and rank 0 logs and checkpoints.
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
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from fastcodec.models.codec_model import DEFAULT_LAMBDAS, CodecModel

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp"}


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already says its default
    or there is none to say (None, False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or "default" in text
                or not action.option_strings):
            return text
        value = action.default
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value) or "none"
        return f"{text} (default: {value})" if text else f"default: {value}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastcodec train", description="Train the learned codec (all qualities at once).",
        formatter_class=_DefaultsFormatter,
        epilog="The model options apply to a new model; on resume the checkpoint's config is "
               "used. The shipped fcf64-v5's architecture: --N 64 --M 192 --first-width 32 "
               "--head-width 256 --last-width 16 --skip --lambdas 0.0004 0.0013 0.004 0.013 "
               "0.04 0.13 (it was grown from smaller models: training/README.md gives the "
               "recipes and the commands that resume them).",
    )
    p.add_argument("--data", required=True,
                   help="training images folder (recursive; e.g. ../shared/data/train)")
    p.add_argument("--val", default=None,
                   help="validation images folder (e.g. ../shared/data/val; default: none)")
    p.add_argument("--out", required=True, help="output folder (log.jsonl, checkpoints)")
    p.add_argument("--steps", type=_positive_int, default=1_000_000,
                   help="total optimizer steps (a resumed run counts its earlier steps)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="crops per step (per rank)")
    p.add_argument("--crop", type=int, default=128, help="crop size (multiple of 16)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate of the main Adam")
    p.add_argument("--prior-lr-mult", type=float, default=10.0,
                   help="learning-rate multiplier of the prior's density network and the gains")
    p.add_argument("--aux-lr", type=float, default=1e-3, help="learning rate of the aux Adam")
    p.add_argument("--lr-decay-at", type=int, nargs="*", default=[],
                   help="steps at which the learning rate is multiplied by --lr-decay")
    p.add_argument("--lr-decay", type=float, default=0.1, help="learning-rate factor")
    p.add_argument("--warmup", type=int, default=500,
                   help="linear learning-rate warm-up steps (again after a resume that starts a "
                        "fresh optimizer)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0 = off)")
    p.add_argument("--ema-decay", type=float, default=0.999,
                   help="exponential moving average of the weights (0 = off): validation and "
                        "the exported weights use the average")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops, noise and init")
    p.add_argument("--resume", default=None,
                   help="checkpoint to resume from, 'auto' (OUT/latest.pt), or a shipped model "
                        "(an installed model id or a weights file): its weights, fresh optimizers")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--amp", default="auto", choices=["auto", "none", "bf16", "fp16"],
                   help="autocast (auto = bf16 on CUDA, none on CPU; bf16 also runs on CPU, "
                        "fp16 only on CUDA)")
    p.add_argument("--memory-format", default="auto",
                   choices=["auto", "channels_last", "contiguous"],
                   help="layout of weights and activations (auto = channels_last on CPU, "
                        "contiguous on CUDA)")
    p.add_argument("--log-every", type=_positive_int, default=50,
                   help="progress line every N steps")
    p.add_argument("--val-every", type=int, default=2000, help="0 = only at the end")
    p.add_argument("--val-crop", type=int, default=256, help="centre crop of validation images")
    p.add_argument("--val-max-images", type=int, default=0, help="0 = all")
    p.add_argument("--ckpt-every", type=int, default=1000, help="checkpoint every N steps")
    p.add_argument("--ckpt-every-minutes", type=float, default=10.0,
                   help="also checkpoint when this much time passed since the last one")
    p.add_argument("--keep-every", type=int, default=50_000,
                   help="keep a step_XXXXXXXX.pt snapshot every N steps (0 = never)")
    p.add_argument("--max-images", type=int, default=0,
                   help="use at most N training images (0 = all)")
    p.add_argument("--revive-hold", type=int, default=None,
                   help="steps during which the rate sends no gradient into the latent channels "
                        "a checkpoint from 'python -m fastcodec.models.slim --revive' marks "
                        "(default: the checkpoint's value, else 2000)")
    p.add_argument("--revive-ramp", type=int, default=None,
                   help="steps over which that gradient then ramps back to full "
                        "(default: the checkpoint's value, else 6000)")
    p.add_argument("--freeze-synthesis", action="store_true",
                   help="train the encoder side only: the synthesis transform and the inverse "
                        "gains keep their weights, the averaged (EMA) ones when the checkpoint "
                        "has them (the analysis, gains and prior learn)")
    # model (taken from the checkpoint on resume)
    p.add_argument("--N", type=int, default=64, help="hidden width")
    p.add_argument("--M", type=int, default=128, help="latent channels")
    p.add_argument("--pool", default="avg", choices=["avg", "max"],
                   help="pooling of the analysis blocks")
    p.add_argument("--lambdas", type=float, nargs="+", default=list(DEFAULT_LAMBDAS),
                   help="rate-distortion trade-offs of the qualities (loss lambda * 255^2 * MSE "
                        "+ bpp), ascending")
    p.add_argument("--analysis-kernels", type=int, nargs=4, default=[5, 3, 3, 3], metavar="K",
                   help="kernel sizes of the four analysis blocks")
    p.add_argument("--synthesis-kernels", type=int, nargs=4, default=[3, 3, 3, 3], metavar="K",
                   help="kernel sizes of the four synthesis blocks")
    p.add_argument("--first-width", type=int, default=None,
                   help="output width of the first analysis block (default N)")
    p.add_argument("--head-width", type=int, default=None,
                   help="output width of the fourth analysis block (default N; about M "
                        "lets the latent use all its channels)")
    p.add_argument("--analysis-width", type=int, default=None,
                   help="hidden width of the analysis's reduced-resolution layers (default N, "
                        "which then sizes the synthesis only)")
    p.add_argument("--skip", action="store_true",
                   help="linear skip paths around the blocks (fastcodec.models.transforms)")
    p.add_argument("--last-width", type=int, default=None,
                   help="output width of the last synthesis block (default N/2)")
    p.add_argument("--quantize", default="ste", choices=["ste", "noise"],
                   help="what the decoder sees in training: the rounded latent with a "
                        "straight-through gradient, or the noisy one")
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def model_config(args) -> dict:
    return dict(
        N=args.N, M=args.M, pool=args.pool, lambdas=list(args.lambdas),
        analysis_kernels=list(args.analysis_kernels),
        synthesis_kernels=list(args.synthesis_kernels),
        last_width=args.last_width, quantize=args.quantize, first_width=args.first_width,
        skip=args.skip, head_width=args.head_width, analysis_width=args.analysis_width,
    )


class TrainError(ValueError):
    """A usage problem found before training starts (``fastcodec train`` exits with status 2)."""


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


def _check_inputs(args) -> Tuple[List[Path], Optional[dict], Optional[str]]:
    """Usage errors before anything is written (TrainError): the crop, the image folders, the
    checkpoint and model options that contradict it. Returns (training image paths, the
    checkpoint or None, its path or None)."""
    if args.crop % 16 or args.crop < 16:
        raise TrainError(f"--crop must be a positive multiple of 16, got {args.crop}")
    try:
        paths = list_images(args.data)
        if args.val:
            list_images(args.val)
    except FileNotFoundError as exc:
        raise TrainError(str(exc)) from None
    if not paths:
        raise TrainError(f"no training images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in "
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


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def list_images(folder) -> List[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)


def load_rgb(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class CropSampler:
    """Random crops (with random horizontal flips) from images held in memory."""

    def __init__(self, images: List[np.ndarray], crop: int, seed) -> None:
        if not images:
            raise ValueError("no training images")
        self.crop = crop
        self.images = []
        for im in images:  # images smaller than the crop are padded by reflection once
            h, w = im.shape[:2]
            ph, pw = max(0, crop - h), max(0, crop - w)
            if ph or pw:
                im = np.pad(im, ((0, ph), (0, pw), (0, 0)), mode="reflect" if
                            (ph < h and pw < w) else "edge")
            self.images.append(im)
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        c = self.crop
        out = np.empty((n, c, c, 3), dtype=np.uint8)
        for i in range(n):
            im = self.images[self.rng.integers(len(self.images))]
            top = self.rng.integers(im.shape[0] - c + 1)
            left = self.rng.integers(im.shape[1] - c + 1)
            patch = im[top : top + c, left : left + c]
            out[i] = patch[:, ::-1] if self.rng.random() < 0.5 else patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def centre_crop(im: np.ndarray, size: int) -> np.ndarray:
    h, w = im.shape[:2]
    ch, cw = min(size, h), min(size, w)
    ch, cw = ch - ch % 16, cw - cw % 16
    top, left = (h - ch) // 2, (w - cw) // 2
    return im[top : top + ch, left : left + cw]


def load_val(folder, size: int, max_images: int = 0) -> Optional[torch.Tensor]:
    """Centre crops (``size``, same for all) of the validation images as ``[V, 3, s, s]``."""
    if not folder:
        return None
    paths = list_images(folder)
    if max_images:
        paths = paths[:max_images]
    crops = [centre_crop(load_rgb(p), size) for p in paths]
    kept = [c for c in crops if c.shape[:2] == (size, size)]
    if not kept:
        raise TrainError(f"no validation image in {folder} is at least {size}x{size} "
                         f"({len(crops)} images); lower --val-crop or leave out --val")
    if len(kept) < len(crops):
        print(f"[train] note: {len(crops) - len(kept)} of {len(crops)} validation images are "
              f"smaller than --val-crop {size} and are left out", flush=True)
    return torch.from_numpy(np.stack(kept)).permute(0, 3, 1, 2).float().div_(255.0)


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------


def psnr(mse: torch.Tensor) -> torch.Tensor:
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


@torch.no_grad()
def validate(model: CodecModel, images: torch.Tensor, device, chunk: int = 4) -> dict:
    """bpp (likelihoods of the rounded latent) and PSNR (of the clamped output) per quality,
    averaged over images; ``psnr_ceiling``: PSNR of the transforms alone (the top quality's
    latent, scaled by its gains but not rounded). When the top quality's PSNR is close to it,
    the transforms, not the rate, limit the quality."""
    was_training = model.training
    model.eval()
    k = model.num_qualities
    bpp = torch.zeros(k, dtype=torch.float64)
    pq = torch.zeros(k, dtype=torch.float64)
    ceiling = torch.zeros((), dtype=torch.float64)
    g, ig = (t[None, :, None, None] for t in model.gains(k - 1))
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(device)
        for q in range(k):
            out = model(x, q)
            mse = ((out["x_hat"].float().clamp(0, 1) - x) ** 2).flatten(1).mean(1)
            bpp[q] += out["bpp"].double().sum().cpu()
            pq[q] += psnr(mse).double().sum().cpu()
        # the same latent (the forward's y, padded to 16k), unrounded
        x_hat = model.g_s(out["y"].float() * g * ig)[:, :, : x.shape[2], : x.shape[3]]
        mse = ((x_hat.float().clamp(0, 1) - x) ** 2).flatten(1).mean(1)
        ceiling += psnr(mse).double().sum().cpu()
    model.train(was_training)
    n = images.shape[0]
    return {
        "bpp": [round(float(v / n), 4) for v in bpp],
        "psnr": [round(float(v / n), 3) for v in pq],
        "psnr_ceiling": round(float(ceiling / n), 3),
    }


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def _is_fast(name: str) -> bool:
    """Parameters trained at ``--prior-lr-mult`` times the learning rate: the density network
    of the prior and the gains (small, well-conditioned, and far from their optimum at init)."""
    return (name.startswith("entropy.") and name != "entropy.quantiles") or name in (
        "log_gain", "log_inv_gain")


def _is_synthesis(name: str) -> bool:
    """Parameters the decoder alone uses (held by ``--freeze-synthesis``): the synthesis
    transform and the inverse gains."""
    return name.startswith("g_s.") or name == "log_inv_gain"


def resolve_memory_format(name: str, device: torch.device) -> torch.memory_format:
    """``--memory-format``: auto = channels-last on CPU (oneDNN convolutions run 1.3x faster in
    fp32 and 1.6x in bf16 there), contiguous on CUDA."""
    if name == "auto":
        name = "channels_last" if device.type == "cpu" else "contiguous"
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def learning_rate(args, step: int, opt_start: int = 0) -> float:
    """``--lr`` at ``step``: warmed up linearly over ``--warmup`` steps from ``opt_start`` (the
    step at which the optimizer started fresh), times ``--lr-decay`` per passed decay step."""
    lr = args.lr * min(1.0, (step - opt_start + 1) / max(1, args.warmup))
    for s in args.lr_decay_at:
        if step >= s:
            lr *= args.lr_decay
    return lr


class _Stop:
    """Turns SIGINT/SIGTERM into a flag so the loop can write a checkpoint before exiting."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _log(line: dict, text: str, log_file) -> None:
    print(text, flush=True)
    if log_file is not None:
        log_file.write(json.dumps(line) + "\n")
        log_file.flush()


def _revive_schedule(ckpt: Optional[dict], args) -> Optional[dict]:
    """The revived channels of a checkpoint and their rate-gradient schedule (steps), or None."""
    rev = (ckpt or {}).get("revive")
    if not rev:
        return None
    hold = args.revive_hold if args.revive_hold is not None else rev.get("hold", 2000)
    ramp = args.revive_ramp if args.revive_ramp is not None else rev.get("ramp", 6000)
    if hold < 0 or ramp < 0:
        raise ValueError(f"--revive-hold and --revive-ramp must be >= 0, got {hold}, {ramp}")
    return {"channels": [int(c) for c in rev["channels"]], "start": int(rev.get("start", 0)),
            "hold": int(hold), "ramp": int(ramp)}


def _rate_grad_scale(revived: dict, step: int, channels: int, device) -> Optional[torch.Tensor]:
    """``[M]`` rate-gradient factors at ``step``: 0 for the revived channels through the hold,
    then linear to 1 over the ramp; None once every factor is 1."""
    t = step - revived["start"] - revived["hold"]
    w = 1.0 if t >= revived["ramp"] else max(0.0, t / max(1, revived["ramp"]))
    if w >= 1.0:
        return None
    scale = torch.ones(channels, device=device)
    scale[revived["channels"]] = w
    return scale


def _lock_folder(out: Path):
    """An exclusive lock on ``out`` for this run (released when the process ends, even killed):
    two trainers writing one folder would interleave the log and overwrite each other's
    checkpoints. None where ``fcntl`` does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    handle = open(out / ".train.lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise TrainError(f"another fastcodec train is running in {out}") from None
    return handle


def run(args) -> dict:
    """Trains as ``args`` says; returns the last progress record (rank 0) or {}. Raises
    TrainError for usage problems, before anything is written."""
    paths, ckpt, resume = _check_inputs(args)
    if ckpt and int(ckpt.get("step", 0)) >= args.steps:
        print(f"[train] {resume} is at step {int(ckpt.get('step', 0))}, not below --steps "
              f"{args.steps}: nothing to do (raise --steps to continue)", flush=True)
        return {}
    val = load_val(args.val, args.val_crop, args.val_max_images) if args.val else None
    distributed = "LOCAL_RANK" in os.environ
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    rank, world = 0, 1
    if distributed:
        import torch.distributed as dist

        local_rank = int(os.environ["LOCAL_RANK"])
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    if args.threads:
        torch.set_num_threads(args.threads)
    is_main = rank == 0
    out = Path(args.out)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)

    amp = args.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    if device.type != "cuda" and amp == "fp16":
        raise ValueError("--amp fp16 is for CUDA; on CPU use bf16 or none")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    random.seed(args.seed + rank)
    np.random.seed((args.seed + rank) % 2**32)
    torch.manual_seed(args.seed + rank)

    config = ckpt["model_config"] if ckpt else model_config(args)
    # the model options as they apply (a resumed run keeps the checkpoint's)
    recorded_args = {**vars(args), **{k: v for k, v in config.items() if k in vars(args)}}
    memory_format = resolve_memory_format(args.memory_format, device)
    model = CodecModel.from_config(config).to(device, memory_format=memory_format)
    if ckpt:
        model.load_state_dict(ckpt["model"])
    if not 0.0 <= args.ema_decay < 1.0:
        raise ValueError(f"--ema-decay must be in [0, 1), got {args.ema_decay}")
    ema = None
    if args.ema_decay > 0:
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        if ckpt and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
    if args.freeze_synthesis:  # the decoder kept is the averaged one, which exports ship
        averaged = dict(ema.named_parameters()) if ema is not None else {}
        for name, p in model.named_parameters():
            if _is_synthesis(name):
                if name in averaged:
                    with torch.no_grad():
                        p.copy_(averaged[name])
                p.requires_grad_(False)
    aux_params = [model.entropy.quantiles]
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fast = [p for n, p in trained if _is_fast(n)]
    slow = [p for n, p in trained if n != "entropy.quantiles" and not _is_fast(n)]
    main_params = slow + fast
    opt = torch.optim.Adam(
        [{"params": slow}, {"params": fast}],
        lr=args.lr,
    )
    aux_opt = torch.optim.Adam(aux_params, lr=args.aux_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))

    ddp_model = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    t0 = time.perf_counter()
    images = [load_rgb(p) for p in paths]
    sampler = CropSampler(images, args.crop, [args.seed, rank])
    val = val if is_main else None

    lineage = list(ckpt.get("lineage", [])) if ckpt else []  # runs this one continues
    revived = _revive_schedule(ckpt, args)
    step = opt_start = 0  # opt_start: where the optimizer started fresh (its warm-up counts from)
    if ckpt and "optimizer" not in ckpt:  # weights only (slim, committed ones): fresh optimizer
        step = opt_start = int(ckpt.get("step", 0))
    elif ckpt:
        opt_start = int(ckpt.get("opt_start", 0))
        opt.load_state_dict(ckpt["optimizer"])
        aux_opt.load_state_dict(ckpt["aux_optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        step = int(ckpt["step"])
        if rank == 0 and world == ckpt.get("world_size", 1):
            set_rng_state(ckpt["rng"], sampler)
        else:  # other ranks: fresh streams that depend on the step (no duplicated crops)
            sampler = CropSampler(images, args.crop, [args.seed, rank, step])
            torch.manual_seed(args.seed * 1_000_003 + rank * 7919 + step)
    lock = _lock_folder(out) if is_main else None  # released in the finally below
    log_file = open(out / "log.jsonl", "a") if is_main else None
    if is_main:
        n_params = sum(p.numel() for p in model.parameters())
        _log(
            {"event": "start", "step": step, "resume": resume, "device": str(device),
             "world_size": world, "amp": amp, "threads": torch.get_num_threads(),
             "images": len(images), "val_images": 0 if val is None else int(val.shape[0]),
             "params": n_params, "model_config": config, "args": recorded_args,
             "load_s": round(time.perf_counter() - t0, 2), "time": time.time()},
            f"[train] {len(images)} images ({time.perf_counter() - t0:.1f} s), device {device}"
            f" x{world}, amp {amp}, threads {torch.get_num_threads()}, {n_params:,} params, "
            f"start step {step}" + (f" (resumed from {resume})" if resume else ""),
            log_file,
        )

    def checkpoint(path: Path) -> None:
        save_checkpoint(path, {
            "model": model.state_dict(),
            "ema": None if ema is None else ema.state_dict(),
            "ema_decay": args.ema_decay,
            "model_config": config,
            "optimizer": opt.state_dict(),
            "aux_optimizer": aux_opt.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "opt_start": opt_start,
            "rng": rng_state(sampler),
            "args": recorded_args,
            "world_size": world,
            "time": time.time(),
            "lineage": lineage,
            **({"revive": revived} if revived else {}),
        })

    def run_val() -> None:
        if val is None:
            return
        tv = time.perf_counter()
        res = validate(model if ema is None else ema, val, device)
        lambdas = model.lambdas.tolist()
        text = "  ".join(f"q{i}({lam:g}): {b:.3f} bpp {p:.2f} dB"
                         for i, (lam, b, p) in enumerate(zip(lambdas, res["bpp"], res["psnr"])))
        text += f"  (unquantized: {res['psnr_ceiling']:.2f} dB)"
        _log({"event": "val", "step": step, "ema": ema is not None, "lambdas": lambdas, **res,
              "seconds": round(time.perf_counter() - tv, 1), "time": time.time()},
             f"[val] step {step}: {text}", log_file)

    stop = _Stop()
    stop.install()

    def stop_now() -> bool:
        """A signal stops the run at a step boundary; under DDP every rank must stop at the
        same step, so the flag is agreed on (all-reduce, every --log-every steps)."""
        if not distributed:
            return stop.requested
        if step % max(1, args.log_every):
            return False
        import torch.distributed as dist

        flag = torch.tensor([1.0 if stop.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop.requested = bool(flag.item() > 0)
        return stop.requested
    k = model.num_qualities
    lambdas = model.lambdas
    pixels_per_step = args.batch_size * args.crop * args.crop * world
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "psnr": 0.0, "aux": 0.0, "n": 0}
    per_q = torch.zeros(3, k, dtype=torch.float64)  # per quality: count, bpp sum, PSNR sum
    t_window, steps_window = time.perf_counter(), 0
    last_ckpt_time = time.perf_counter()
    last: dict = {}
    model.train()
    failed = False
    try:
        while step < args.steps and not stop_now():
            lr = learning_rate(args, step, opt_start)
            for group, mult in zip(opt.param_groups, (1.0, args.prior_lr_mult)):
                group["lr"] = lr * mult  # the command line wins over a resumed state
            for group in aux_opt.param_groups:
                group["lr"] = args.aux_lr
            if revived:
                model.rate_grad_scale = _rate_grad_scale(revived, step, model.M, device)
            x = sampler.batch(args.batch_size).to(device, non_blocking=True)
            x = x.contiguous(memory_format=memory_format)
            qi = torch.randint(0, k, (x.shape[0],), device=device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                res = ddp_model(x, qi)
            mse = ((res["x_hat"].float() - x) ** 2).flatten(1).mean(1)
            bpp = res["bpp"]
            loss = (lambdas[qi] * 255.0**2 * mse + bpp).mean()
            aux = res["aux_loss"]
            opt.zero_grad(set_to_none=True)
            aux_opt.zero_grad(set_to_none=True)
            # quantiles only get gradients from aux, the rest only from loss: one backward
            scaler.scale(loss + aux).backward()
            if args.clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(main_params, args.clip)
            scaler.step(opt)
            scaler.step(aux_opt)
            scaler.update()
            if ema is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()),
                                         1.0 - args.ema_decay)
            step += 1
            steps_window += 1

            with torch.no_grad():
                loss_value = float(loss.detach())
                acc["loss"] += loss_value
                acc["bpp"] += float(bpp.mean())
                acc["mse"] += float(mse.mean())
                acc["psnr"] += float(psnr(mse).mean())
                acc["aux"] += float(aux.detach())
                acc["n"] += 1
                per_q += torch.stack([
                    torch.bincount(qi, minlength=k),
                    torch.bincount(qi, weights=bpp.detach().float(), minlength=k),
                    torch.bincount(qi, weights=psnr(mse.detach()).float(), minlength=k),
                ]).double().cpu()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"non-finite loss at step {step}")

            if is_main and (step % args.log_every == 0 or step == args.steps):
                now = time.perf_counter()
                dt = now - t_window
                n = acc["n"]
                last = {
                    "event": "train", "step": step, "loss": acc["loss"] / n,
                    "bpp": acc["bpp"] / n, "mse": acc["mse"] / n, "psnr": acc["psnr"] / n,
                    "aux": acc["aux"] / n, "lr": lr, "steps_per_s": steps_window / dt,
                    "mp_per_s": steps_window * pixels_per_step / dt / 1e6, "time": time.time(),
                    "bpp_per_q": [round(float(v), 4) for v in per_q[1] / per_q[0].clamp_min(1)],
                    "psnr_per_q": [round(float(v), 3) for v in per_q[2] / per_q[0].clamp_min(1)],
                }
                if revived:
                    w = model.rate_grad_scale
                    last["revived_rate_grad"] = 1.0 if w is None else float(
                        w[revived["channels"][0]])
                per_q.zero_()
                _log(last,
                     f"step {step:>8}  loss {last['loss']:8.4f}  bpp {last['bpp']:.4f}  "
                     f"PSNR {last['psnr']:6.2f}  aux {last['aux']:8.2f}  lr {lr:.2e}  "
                     f"{last['steps_per_s']:.2f} steps/s  {last['mp_per_s']:.3f} MP/s",
                     log_file)
                acc = {key: 0.0 for key in acc}
                acc["n"] = 0
                t_window, steps_window = now, 0
            if is_main and args.val_every and step % args.val_every == 0:
                run_val()
                t_window = time.perf_counter()  # keep validation out of the speed figures
            if is_main:
                timed = (time.perf_counter() - last_ckpt_time) >= args.ckpt_every_minutes * 60
                if (args.ckpt_every and step % args.ckpt_every == 0) or timed:
                    checkpoint(out / "latest.pt")
                    last_ckpt_time = time.perf_counter()
                if args.keep_every and step % args.keep_every == 0:
                    checkpoint(out / f"step_{step:08d}.pt")
    except BaseException:
        failed = True  # never overwrite latest.pt with the state of a failed step
        raise
    finally:
        stop.restore()
        if is_main and not failed:
            checkpoint(out / "latest.pt")
            if step >= args.steps and not (args.val_every and step % args.val_every == 0):
                run_val()
        if is_main:
            _log({"event": "stop", "step": step, "interrupted": stop.requested,
                  "failed": failed, "time": time.time()},
                 f"[train] stopped at step {step}" + ("" if failed else
                 f"; checkpoint {out / 'latest.pt'}"), log_file)
            log_file.close()
        if lock is not None:
            lock.close()
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    return last


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except TrainError as exc:
        print(f"fastcodec train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
