"""The training loop (run) and what it needs around it: the memory format, SIGINT/SIGTERM
as a stop flag, progress lines with their log.jsonl records, the output folder's lock."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import signal
import time
from pathlib import Path

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


def run(args) -> dict:
    """Trains as ``args`` says; returns the last progress record (rank 0) or {}. Raises
    TrainError for usage problems, before anything is written."""
    paths, ckpt, resume = check_inputs(args)
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
            if is_synthesis(name):
                if name in averaged:
                    with torch.no_grad():
                        p.copy_(averaged[name])
                p.requires_grad_(False)
    aux_params = [model.entropy.quantiles]
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fast = [p for n, p in trained if is_fast(n)]
    slow = [p for n, p in trained if n != "entropy.quantiles" and not is_fast(n)]
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
    revived = revive_schedule(ckpt, args)
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
                model.rate_grad_scale = rate_grad_scale(revived, step, model.M, device)
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
