"""The training loop (run) and what it needs around it: the memory format, SIGINT/SIGTERM
as a stop flag, progress lines with their log.jsonl records, the output folder's lock.

``run`` is the outline: the usage checks, then ``_setup`` (device, seeds, model and average,
optimizers, images, resumed state, output folder) builds a ``_Run``; each step is a
``_train_step`` followed on rank 0 by ``_maybe_log_progress`` and
``_maybe_validate_and_checkpoint``; ``_finish`` ends every run, failed or stopped ones too."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import torch

from fastcodec.models.codec_model import CodecModel
from fastcodec.train.checkpoints import rng_state, save_checkpoint, set_rng_state
from fastcodec.train.checks import check_inputs
from fastcodec.train.data import CropSampler, load_rgb, load_val
from fastcodec.train.options import TrainError, model_config
from fastcodec.train.schedule import (
    is_fast,
    is_synthesis,
    learning_rate,
    rate_grad_scale,
    revive_schedule,
)
from fastcodec.train.validation import psnr, validate


def resolve_memory_format(name: str, device: torch.device) -> torch.memory_format:
    """``--memory-format``: auto = channels-last on CPU (oneDNN convolutions run 1.3x faster in
    fp32 and 1.6x in bf16 there), contiguous on CUDA."""
    if name == "auto":
        name = "channels_last" if device.type == "cpu" else "contiguous"
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


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


@dataclass
class _Run:
    """What the step loop works on, built by _setup. ``step``: the optimizer steps so far (a
    resumed run's included); ``opt_start``: the step at which the optimizer started fresh (the
    warm-up counts from it); ``val``: the validation crops ``[V, 3, s, s]`` in [0, 1] (rank 0
    only, else None); ``lock`` and ``log_file``: rank 0's hold on the output folder."""

    args: Any
    device: torch.device
    rank: int
    world: int
    distributed: bool
    out: Path
    amp: str
    amp_dtype: Optional[torch.dtype]
    memory_format: torch.memory_format
    config: dict
    recorded_args: dict
    model: CodecModel
    ema: Optional[CodecModel]
    ddp_model: torch.nn.Module
    main_params: list
    opt: torch.optim.Optimizer
    aux_opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: CropSampler
    val: Optional[torch.Tensor]
    lineage: list
    revived: Optional[dict]
    step: int = 0
    opt_start: int = 0
    lock: Any = None
    log_file: Any = None
    stop: _Stop = field(default_factory=_Stop)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def checkpoint(self, path: Path) -> None:
        """Writes the whole state at ``self.step`` to ``path`` (atomically)."""
        save_checkpoint(path, {
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "ema_decay": self.args.ema_decay,
            "model_config": self.config,
            "optimizer": self.opt.state_dict(),
            "aux_optimizer": self.aux_opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "opt_start": self.opt_start,
            "rng": rng_state(self.sampler),
            "args": self.recorded_args,
            "world_size": self.world,
            "time": time.time(),
            "lineage": self.lineage,
            **({"revive": self.revived} if self.revived else {}),
        })

    def run_validation(self) -> None:
        """Validates the weight average (the model without one) on ``val``, if any: a [val]
        line and its log.jsonl record (bpp and PSNR in dB per quality)."""
        if self.val is None:
            return
        tv = time.perf_counter()
        model, ema = self.model, self.ema
        res = validate(model if ema is None else ema, self.val, self.device)
        lambdas = model.lambdas.tolist()
        text = "  ".join(f"q{i}({lam:g}): {b:.3f} bpp {p:.2f} dB"
                         for i, (lam, b, p) in enumerate(zip(lambdas, res["bpp"], res["psnr"])))
        text += f"  (unquantized: {res['psnr_ceiling']:.2f} dB)"
        _log({"event": "val", "step": self.step, "ema": ema is not None, "lambdas": lambdas,
              **res, "seconds": round(time.perf_counter() - tv, 1), "time": time.time()},
             f"[val] step {self.step}: {text}", self.log_file)

    def stop_now(self) -> bool:
        """A signal stops the run at a step boundary; under DDP every rank must stop at the
        same step, so the flag is agreed on (all-reduce, every --log-every steps)."""
        stop = self.stop
        if not self.distributed:
            return stop.requested
        if self.step % max(1, self.args.log_every):
            return False
        import torch.distributed as dist

        flag = torch.tensor([1.0 if stop.requested else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop.requested = bool(flag.item() > 0)
        return stop.requested


class _Progress:
    """What the progress lines report, gathered between two of them: the sums of the steps'
    means (loss, bpp, MSE of [0, 1] pixels, PSNR in dB, aux) and their count ``n``, per quality
    ``[3, K]`` the count and the sums of bpp and PSNR, the steps and the clock of the speed
    figures; also the last record (what run returns) and the clock of the timed checkpoints."""

    def __init__(self, r: _Run) -> None:
        self.k = r.model.num_qualities
        self.pixels_per_step = r.args.batch_size * r.args.crop * r.args.crop * r.world
        self.sums = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "psnr": 0.0, "aux": 0.0, "n": 0}
        self.per_q = torch.zeros(3, self.k, dtype=torch.float64)
        self.t_window, self.steps_window = time.perf_counter(), 0
        self.last_ckpt_time = time.perf_counter()
        self.last: dict = {}

    def add(self, qi, loss, mse, bpp, aux) -> float:
        """Adds a step: ``qi``, ``mse`` and ``bpp`` ``[B]`` (quality index, MSE and bits per
        pixel of each crop), ``loss`` and ``aux`` scalars. Returns the loss as a float."""
        self.steps_window += 1
        sums, k = self.sums, self.k
        with torch.no_grad():
            loss_value = float(loss.detach())
            sums["loss"] += loss_value
            sums["bpp"] += float(bpp.mean())
            sums["mse"] += float(mse.mean())
            sums["psnr"] += float(psnr(mse).mean())
            sums["aux"] += float(aux.detach())
            sums["n"] += 1
            self.per_q += torch.stack([
                torch.bincount(qi, minlength=k),
                torch.bincount(qi, weights=bpp.detach().float(), minlength=k),
                torch.bincount(qi, weights=psnr(mse.detach()).float(), minlength=k),
            ]).double().cpu()
        return loss_value


def run(args) -> dict:
    """Trains as ``args`` says; returns the last progress record (rank 0) or {}. Raises
    TrainError for usage problems, before anything is written. On SIGINT/SIGTERM it stops at
    the next step boundary and writes latest.pt; after an error in a step it does not."""
    paths, ckpt, resume = check_inputs(args)
    if ckpt and int(ckpt.get("step", 0)) >= args.steps:
        print(f"[train] {resume} is at step {int(ckpt.get('step', 0))}, not below --steps "
              f"{args.steps}: nothing to do (raise --steps to continue)", flush=True)
        return {}
    r = _setup(args, paths, ckpt, resume)
    r.stop.install()
    progress = _Progress(r)
    r.model.train()
    failed = False
    try:
        while r.step < args.steps and not r.stop_now():
            lr = _train_step(r, progress)
            if r.is_main:
                _maybe_log_progress(r, progress, lr)
                _maybe_validate_and_checkpoint(r, progress)
    except BaseException:
        failed = True  # never overwrite latest.pt with the state of a failed step
        raise
    finally:
        _finish(r, failed)
    return progress.last


def _setup(args, paths: List[Path], ckpt: Optional[dict], resume: Optional[str]) -> _Run:
    """Everything the loop needs, after the usage checks (``paths``: the training images,
    ``ckpt``: the checkpoint at ``resume`` or None): the validation crops, the device, the
    seeds, the model and its average, the optimizers, the images in memory and the resumed
    state; rank 0 creates the output folder, locks it and logs the start. (Option values were
    checked before, by ``checks.check_inputs``.)"""
    val = load_val(args.val, args.val_crop, args.val_max_images) if args.val else None
    device, rank, world, distributed = _init_device(args)
    out = Path(args.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    amp, amp_dtype = _resolve_amp(args.amp, device)
    random.seed(args.seed + rank)
    np.random.seed((args.seed + rank) % 2**32)
    torch.manual_seed(args.seed + rank)

    config = ckpt["model_config"] if ckpt else model_config(args)
    memory_format = resolve_memory_format(args.memory_format, device)
    model, ema = _build_model(args, config, ckpt, device, memory_format)
    opt, aux_opt, scaler, main_params = _build_optimizers(args, model, device, amp)
    ddp_model = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    t0 = time.perf_counter()
    images = [load_rgb(p) for p in paths]
    r = _Run(
        args=args, device=device, rank=rank, world=world, distributed=distributed, out=out,
        amp=amp, amp_dtype=amp_dtype, memory_format=memory_format, config=config,
        # the model options as they apply (a resumed run keeps the checkpoint's)
        recorded_args={**vars(args), **{k: v for k, v in config.items() if k in vars(args)}},
        model=model, ema=ema, ddp_model=ddp_model, main_params=main_params, opt=opt,
        aux_opt=aux_opt, scaler=scaler, sampler=CropSampler(images, args.crop, [args.seed, rank]),
        val=val if rank == 0 else None,
        lineage=list(ckpt.get("lineage", [])) if ckpt else [],  # runs this one continues
        revived=revive_schedule(ckpt, args),
    )
    _restore_state(r, ckpt, images)
    _open_output(r, resume, len(images), t0)
    return r


def _init_device(args) -> Tuple[torch.device, int, int, bool]:
    """The device of --device (auto: CUDA when there is one) and, under torchrun
    (``LOCAL_RANK`` set), the process group (NCCL on CUDA, else gloo); applies --threads.
    Returns (device, rank, world size, distributed)."""
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
    return device, rank, world, distributed


def _resolve_amp(amp: str, device: torch.device) -> Tuple[str, Optional[torch.dtype]]:
    """--amp on ``device`` (auto: bf16 on CUDA, none elsewhere) and its autocast dtype (None:
    no autocast)."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    return amp, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)


def _build_model(args, config: dict, ckpt: Optional[dict], device: torch.device,
                 memory_format: torch.memory_format) -> Tuple[CodecModel, Optional[CodecModel]]:
    """The model of ``config`` (initialised from the torch RNG, then given the checkpoint's
    weights when there is one) and its weight average (None with --ema-decay 0), the synthesis
    frozen under --freeze-synthesis."""
    model = CodecModel.from_config(config).to(device, memory_format=memory_format)
    if ckpt:
        model.load_state_dict(ckpt["model"])
    ema = None
    if args.ema_decay > 0:
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        if ckpt and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
    if args.freeze_synthesis:
        _freeze_synthesis(model, ema)
    return model, ema


def _freeze_synthesis(model: CodecModel, ema: Optional[CodecModel]) -> None:
    """--freeze-synthesis: the synthesis parameters stop learning, set to their averaged values
    where there is an average (the decoder kept is the averaged one, which exports ship)."""
    averaged = dict(ema.named_parameters()) if ema is not None else {}
    for name, p in model.named_parameters():
        if is_synthesis(name):
            if name in averaged:
                with torch.no_grad():
                    p.copy_(averaged[name])
            p.requires_grad_(False)


def _build_optimizers(args, model: CodecModel, device: torch.device, amp: str
                      ) -> Tuple[torch.optim.Adam, torch.optim.Adam, torch.amp.GradScaler, list]:
    """The main Adam (group 0: the slow parameters at --lr, group 1: the fast ones, see
    schedule.is_fast), the aux Adam of the entropy model's quantiles (--aux-lr) and the
    GradScaler (enabled for fp16 only). Returns (opt, aux_opt, scaler, the main Adam's
    parameters, which the gradient clip covers)."""
    aux_params = [model.entropy.quantiles]
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fast = [p for n, p in trained if is_fast(n)]
    slow = [p for n, p in trained if n != "entropy.quantiles" and not is_fast(n)]
    opt = torch.optim.Adam(
        [{"params": slow}, {"params": fast}],
        lr=args.lr,
    )
    aux_opt = torch.optim.Adam(aux_params, lr=args.aux_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))
    return opt, aux_opt, scaler, slow + fast


def _restore_state(r: _Run, ckpt: Optional[dict], images: List[np.ndarray]) -> None:
    """Continues ``ckpt`` (None: a fresh run at step 0). A full checkpoint gives the step, the
    optimizer and scaler states and, on rank 0 of the same world size, the RNG streams (other
    ranks draw fresh ones that depend on the step, from ``images``); a weights-only one gives
    its step only, from which the fresh optimizer warms up. So does a full checkpoint whose
    optimizer covered other parameters (``--freeze-synthesis`` added or dropped)."""
    froze = bool(((ckpt or {}).get("args") or {}).get("freeze_synthesis"))
    if ckpt and "optimizer" in ckpt and froze != bool(r.args.freeze_synthesis):
        if r.is_main:
            print(f"[train] --freeze-synthesis {'dropped' if froze else 'added'}: the "
                  f"checkpoint's optimizer trained other parameters; fresh optimizers from "
                  f"step {int(ckpt['step'])} (--warmup counts from there)", flush=True)
        ckpt = {k: v for k, v in ckpt.items() if k not in ("optimizer", "aux_optimizer")}
    if ckpt and "optimizer" not in ckpt:  # weights only (slim, committed ones): fresh optimizer
        r.step = r.opt_start = int(ckpt.get("step", 0))
    elif ckpt:
        r.opt_start = int(ckpt.get("opt_start", 0))
        r.opt.load_state_dict(ckpt["optimizer"])
        r.aux_opt.load_state_dict(ckpt["aux_optimizer"])
        if ckpt.get("scaler"):
            r.scaler.load_state_dict(ckpt["scaler"])
        r.step = int(ckpt["step"])
        if r.rank == 0 and r.world == ckpt.get("world_size", 1):
            set_rng_state(ckpt["rng"], r.sampler)
        else:  # other ranks: fresh streams that depend on the step (no duplicated crops)
            args = r.args
            r.sampler = CropSampler(images, args.crop, [args.seed, r.rank, r.step])
            torch.manual_seed(args.seed * 1_000_003 + r.rank * 7919 + r.step)


def _open_output(r: _Run, resume: Optional[str], n_images: int, t0: float) -> None:
    """Rank 0: locks the output folder (TrainError when another trainer holds it; released by
    _finish), opens log.jsonl to append and logs the start (``t0``: perf_counter() when the
    images began to load)."""
    if not r.is_main:
        return
    r.lock = _lock_folder(r.out)
    r.log_file = open(r.out / "log.jsonl", "a")
    device, world, amp, step = r.device, r.world, r.amp, r.step
    n_params = sum(p.numel() for p in r.model.parameters())
    _log(
        {"event": "start", "step": step, "resume": resume, "device": str(device),
         "world_size": world, "amp": amp, "threads": torch.get_num_threads(),
         "images": n_images, "val_images": 0 if r.val is None else int(r.val.shape[0]),
         "params": n_params, "model_config": r.config, "args": r.recorded_args,
         "load_s": round(time.perf_counter() - t0, 2), "time": time.time()},
        f"[train] {n_images} images ({time.perf_counter() - t0:.1f} s), device {device}"
        f" x{world}, amp {amp}, threads {torch.get_num_threads()}, {n_params:,} params, "
        f"start step {step}" + (f" (resumed from {resume})" if resume else ""),
        r.log_file,
    )


def _train_step(r: _Run, progress: _Progress) -> float:
    """One optimizer step on a fresh batch of --batch-size crops (``[B, 3, crop, crop]`` in
    [0, 1]), each crop at a random quality (loss ``lambda * 255^2 * MSE + bpp``); advances
    ``r.step`` and adds the step to ``progress``. Returns the learning rate of the step.
    FloatingPointError for a non-finite loss."""
    args, model, device = r.args, r.model, r.device
    lr = _set_learning_rates(r)
    if r.revived:
        model.rate_grad_scale = rate_grad_scale(r.revived, r.step, model.M, device)
    x = r.sampler.batch(args.batch_size).to(device, non_blocking=True)
    x = x.contiguous(memory_format=r.memory_format)
    qi = torch.randint(0, model.num_qualities, (x.shape[0],), device=device)
    with torch.autocast(device.type, dtype=r.amp_dtype or torch.float32,
                        enabled=r.amp_dtype is not None):
        res = r.ddp_model(x, qi)
    mse = ((res["x_hat"].float() - x) ** 2).flatten(1).mean(1)
    bpp = res["bpp"]
    loss = (model.lambdas[qi] * 255.0**2 * mse + bpp).mean()
    aux = res["aux_loss"]
    _update(r, loss, aux)
    r.step += 1
    loss_value = progress.add(qi, loss, mse, bpp, aux)
    if not math.isfinite(loss_value):
        raise FloatingPointError(f"non-finite loss at step {r.step}")
    return lr


def _set_learning_rates(r: _Run) -> float:
    """Sets the learning rates of step ``r.step``: the schedule's (returned) on the slow group,
    times --prior-lr-mult on the fast one, --aux-lr on the aux Adam."""
    args = r.args
    lr = learning_rate(args, r.step, r.opt_start)
    for group, mult in zip(r.opt.param_groups, (1.0, args.prior_lr_mult)):
        group["lr"] = lr * mult  # the command line wins over a resumed state
    for group in r.aux_opt.param_groups:
        group["lr"] = args.aux_lr
    return lr


def _update(r: _Run, loss: torch.Tensor, aux: torch.Tensor) -> None:
    """Backward of ``loss + aux`` (scalars), the gradient clip (--clip), both Adam steps and
    the weight average's update (--ema-decay)."""
    r.opt.zero_grad(set_to_none=True)
    r.aux_opt.zero_grad(set_to_none=True)
    scaler = r.scaler
    # quantiles only get gradients from aux, the rest only from loss: one backward
    scaler.scale(loss + aux).backward()
    if r.args.clip > 0:
        scaler.unscale_(r.opt)
        torch.nn.utils.clip_grad_norm_(r.main_params, r.args.clip)
    scaler.step(r.opt)
    scaler.step(r.aux_opt)
    scaler.update()
    if r.ema is not None:
        with torch.no_grad():
            torch._foreach_lerp_(list(r.ema.parameters()), list(r.model.parameters()),
                                 1.0 - r.args.ema_decay)


def _maybe_log_progress(r: _Run, progress: _Progress, lr: float) -> None:
    """Rank 0, every --log-every steps and at the last: the progress line and its log.jsonl
    record (means since the previous line, speeds in steps/s and megapixels/s), kept as
    ``progress.last``; then the sums start again."""
    step = r.step
    if not (step % r.args.log_every == 0 or step == r.args.steps):
        return
    acc, per_q = progress.sums, progress.per_q
    now = time.perf_counter()
    dt = now - progress.t_window
    n = acc["n"]
    steps_window = progress.steps_window
    last = {
        "event": "train", "step": step, "loss": acc["loss"] / n,
        "bpp": acc["bpp"] / n, "mse": acc["mse"] / n, "psnr": acc["psnr"] / n,
        "aux": acc["aux"] / n, "lr": lr, "steps_per_s": steps_window / dt,
        "mp_per_s": steps_window * progress.pixels_per_step / dt / 1e6, "time": time.time(),
        "bpp_per_q": [round(float(v), 4) for v in per_q[1] / per_q[0].clamp_min(1)],
        "psnr_per_q": [round(float(v), 3) for v in per_q[2] / per_q[0].clamp_min(1)],
    }
    if r.revived:
        w = r.model.rate_grad_scale
        last["revived_rate_grad"] = 1.0 if w is None else float(w[r.revived["channels"][0]])
    per_q.zero_()
    _log(last,
         f"step {step:>8}  loss {last['loss']:8.4f}  bpp {last['bpp']:.4f}  "
         f"PSNR {last['psnr']:6.2f}  aux {last['aux']:8.2f}  lr {lr:.2e}  "
         f"{last['steps_per_s']:.2f} steps/s  {last['mp_per_s']:.3f} MP/s",
         r.log_file)
    progress.last = last
    progress.sums = {key: 0.0 for key in acc}
    progress.sums["n"] = 0
    progress.t_window, progress.steps_window = now, 0


def _maybe_validate_and_checkpoint(r: _Run, progress: _Progress) -> None:
    """Rank 0, after a step: validates every --val-every steps; writes latest.pt every
    --ckpt-every steps or --ckpt-every-minutes minutes, and step_XXXXXXXX.pt every
    --keep-every steps."""
    args, step = r.args, r.step
    if args.val_every and step % args.val_every == 0:
        r.run_validation()
        progress.t_window = time.perf_counter()  # keep validation out of the speed figures
    timed = (time.perf_counter() - progress.last_ckpt_time) >= args.ckpt_every_minutes * 60
    if (args.ckpt_every and step % args.ckpt_every == 0) or timed:
        r.checkpoint(r.out / "latest.pt")
        progress.last_ckpt_time = time.perf_counter()
    if args.keep_every and step % args.keep_every == 0:
        r.checkpoint(r.out / f"step_{step:08d}.pt")


def _finish(r: _Run, failed: bool) -> None:
    """The end of every run that got past _setup (also on an error or a signal): restores the
    signal handlers; rank 0 writes latest.pt unless a step ``failed``, validates a finished run
    unless its last step just did, logs the stop and closes log.jsonl; then the folder lock and
    the process group are released."""
    args, step = r.args, r.step
    r.stop.restore()
    if r.is_main and not failed:
        r.checkpoint(r.out / "latest.pt")
        if step >= args.steps and not (args.val_every and step % args.val_every == 0):
            r.run_validation()
    if r.is_main:
        _log({"event": "stop", "step": step, "interrupted": r.stop.requested,
              "failed": failed, "time": time.time()},
             f"[train] stopped at step {step}" + ("" if failed else
             f"; checkpoint {r.out / 'latest.pt'}"), r.log_file)
        r.log_file.close()
    if r.lock is not None:
        r.lock.close()
    if r.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
