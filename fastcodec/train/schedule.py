"""The optimisation schedule: which parameters learn faster or stay frozen, the learning rate
per step, and the rate-gradient hold and ramp of revived latent channels."""

from __future__ import annotations

from typing import Optional

import torch


def is_fast(name: str) -> bool:
    """Parameters trained at ``--prior-lr-mult`` times the learning rate: the density network
    of the prior and the gains (small, well-conditioned, and far from their optimum at init)."""
    return (name.startswith("entropy.") and name != "entropy.quantiles") or name in (
        "log_gain", "log_inv_gain")


def is_synthesis(name: str) -> bool:
    """Parameters the decoder alone uses (held by ``--freeze-synthesis``): the synthesis
    transform and the inverse gains."""
    return name.startswith("g_s.") or name == "log_inv_gain"


def learning_rate(args, step: int, opt_start: int = 0) -> float:
    """``--lr`` at ``step``: warmed up linearly over ``--warmup`` steps from ``opt_start`` (the
    step at which the optimizer started fresh), times ``--lr-decay`` per passed decay step."""
    lr = args.lr * min(1.0, (step - opt_start + 1) / max(1, args.warmup))
    for s in args.lr_decay_at:
        if step >= s:
            lr *= args.lr_decay
    return lr


def revive_schedule(ckpt: Optional[dict], args) -> Optional[dict]:
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


def rate_grad_scale(revived: dict, step: int, channels: int, device) -> Optional[torch.Tensor]:
    """``[M]`` rate-gradient factors at ``step``: 0 for the revived channels through the hold,
    then linear to 1 over the ramp; None once every factor is 1."""
    t = step - revived["start"] - revived["hold"]
    w = 1.0 if t >= revived["ramp"] else max(0.0, t / max(1, revived["ramp"]))
    if w >= 1.0:
        return None
    scale = torch.ones(channels, device=device)
    scale[revived["channels"]] = w
    return scale
