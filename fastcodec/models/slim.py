"""Reshaping a trained codec: fewer channels in the two full-resolution layers (slimming) and/or
zero-initialized linear skip paths, then fine-tuning.

The first analysis block and the last synthesis block run at full resolution, so their widths
set most of the cost per pixel. :func:`slim` keeps the ``first_width`` output channels of the
first analysis block and the ``last_width`` (post pixel-shuffle) channels of the last synthesis
block that matter most, and folds the mean contribution of the dropped ones into the next
layer's bias, so the slimmed model starts close to the original and fine-tuning recovers the
rest (``fastcodec train --resume`` on the checkpoint this writes: fresh optimizers, step 0).

Importance of a channel = its mean absolute activation on sample crops (the block's output after
ReLU and pooling / pixel shuffle, plus the skip path's when the model has skips) times the norm
of the next layer's weights that read it.

Command line::

    python -m fastcodec.models.slim IN.pt OUT.pt --first-width 32 --last-width 16 \\
        --data ../shared/data/train
    python -m fastcodec.models.slim IN.pt OUT.pt --skip --data ../shared/data/train
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from fastcodec.models.codec_model import CodecModel
from fastcodec.models.transforms import block_with_skip

__all__ = ["slim", "main"]


def _keep(importance: Tensor, width: int) -> Tensor:
    """Indices of the ``width`` largest entries, in their original order."""
    return torch.sort(torch.topk(importance, width).indices).values


@torch.no_grad()
def slim(model: CodecModel, samples: Tensor, first_width: Optional[int] = None,
         last_width: Optional[int] = None, skip: Optional[bool] = None) -> CodecModel:
    """A copy of ``model`` with narrower full-resolution layers.

    Args:
        model: the trained codec (its weights are not changed).
        samples: ``[B, 3, H, W]`` float crops in [0, 1] (H, W multiples of 16) for the mean
            activations; training images, never the test set.
        first_width, last_width: new widths (None: keep the current one). Must not exceed it.
        skip: add the linear skip paths (zero-initialized: the function does not change) when
            True and the model has none (None: keep as is). Existing skips are kept; those
            of a slimmed layer keep the same channels.
    """
    model = model.float().eval()
    cfg = dict(model.config)
    b0, b1 = model.g_a.blocks[0], model.g_a.blocks[1]
    s3, out = model.g_s.blocks[3], model.g_s.out
    old_first, old_last = b0.weight.shape[0], out.weight.shape[1]
    first = old_first if first_width is None else int(first_width)
    last = old_last if last_width is None else int(last_width)
    if not (1 <= first <= old_first and 1 <= last <= old_last):
        raise ValueError(f"widths must be in 1..{old_first} and 1..{old_last}, "
                         f"got {first_width}, {last_width}")
    scale = int(round((s3.weight.shape[0] // old_last) ** 0.5))

    # mean activations of the first analysis stage and the last synthesis stage (block plus
    # skip path when the model has them: then they may be negative, so importance uses |.|)
    h0 = block_with_skip(model.g_a.blocks[0], model.g_a.skips, 0, samples)
    y = model.g_a(samples)
    for i, block in enumerate(model.g_s.blocks):
        y = block_with_skip(block, model.g_s.skips, i, y)
    a0, a3 = h0.mean((0, 2, 3)), y.mean((0, 2, 3))
    m0, m3 = h0.abs().mean((0, 2, 3)), y.abs().mean((0, 2, 3))

    keep0 = _keep(m0 * b1.weight.flatten(2).norm(dim=(0, 2)), first)
    keep3 = _keep(m3 * out.weight.flatten(2).norm(dim=(0, 2)), last)
    drop0 = torch.ones(old_first, dtype=torch.bool)
    drop0[keep0] = False
    drop3 = torch.ones(old_last, dtype=torch.bool)
    drop3[keep3] = False

    had_skip = bool(cfg.get("skip", False))
    cfg.update(first_width=first, last_width=last, skip=had_skip or bool(skip))
    new = CodecModel.from_config(cfg)
    state = dict(new.state_dict())  # zero skips when added; load_state_dict copies
    state.update(model.state_dict())
    # first analysis block: keep filters; the next block reads only those, plus the dropped
    # channels' mean as a constant in its bias
    state["g_a.blocks.0.weight"] = b0.weight[keep0]
    state["g_a.blocks.0.bias"] = b0.bias[keep0]
    w1 = b1.weight
    state["g_a.blocks.1.weight"] = w1[:, keep0]
    state["g_a.blocks.1.bias"] = b1.bias + (w1[:, drop0].sum((2, 3)) * a0[drop0]).sum(1)
    # last synthesis block: output channel c of the shuffle is conv outputs c*s^2 .. c*s^2+s^2-1
    rows = (keep3[:, None] * scale * scale + torch.arange(scale * scale)).flatten()
    state["g_s.blocks.3.weight"] = s3.weight[rows]
    state["g_s.blocks.3.bias"] = s3.bias[rows]
    state["g_s.out.weight"] = out.weight[:, keep3]
    state["g_s.out.bias"] = out.bias + (out.weight[:, drop3].sum((2, 3)) * a3[drop3]).sum(1)
    if had_skip:  # the skips that write the slimmed channels or read them
        sk0, sk1 = model.g_a.skips[0], model.g_a.skips[1]
        state["g_a.skips.0.weight"] = sk0.weight[keep0]
        state["g_a.skips.0.bias"] = sk0.bias[keep0]
        state["g_a.skips.1.weight"] = sk1.weight[:, keep0]
        state["g_a.skips.1.bias"] = sk1.bias + (sk1.weight[:, drop0].sum((2, 3)) * a0[drop0]).sum(1)
    new.load_state_dict(state)
    return new.eval()


def _samples(folder: str, count: int, crop: int, seed: int) -> Tensor:
    from fastcodec.train import CropSampler, list_images, load_rgb

    paths = list_images(folder)
    if not paths:
        raise FileNotFoundError(f"no images under {folder}")
    sampler = CropSampler([load_rgb(p) for p in paths], crop, [seed])
    return sampler.batch(count)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastcodec.models.slim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="training checkpoint (its EMA weights when it has them)")
    p.add_argument("out", help="checkpoint to write (resume it with fastcodec train)")
    p.add_argument("--first-width", type=int, default=None)
    p.add_argument("--last-width", type=int, default=None)
    p.add_argument("--skip", action="store_true", help="add zero-initialized linear skips")
    p.add_argument("--data", required=True, help="training images for the mean activations")
    p.add_argument("--samples", type=int, default=64, help="crops for the mean activations")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from fastcodec.train import load_checkpoint, load_model, save_checkpoint

    src = load_checkpoint(args.checkpoint)
    model = load_model(args.checkpoint)  # EMA weights when present
    new = slim(model, _samples(args.data, args.samples, args.crop, args.seed),
               args.first_width, args.last_width, skip=args.skip or None)
    state = {k: v.contiguous() for k, v in new.state_dict().items()}
    change = ", ".join(f"{k} {v}" for k, v in (("first_width", args.first_width),
                                                 ("last_width", args.last_width),
                                                 ("skip", args.skip or None)) if v is not None)
    lineage = [*src.get("lineage", []),
               {"run": Path(args.checkpoint).parent.name, "steps": int(src.get("step", 0)),
                "then": change or "copied"}]
    save_checkpoint(Path(args.out), {
        "model": state, "ema": state, "model_config": new.config, "step": 0,
        "lineage": lineage,
        "slimmed_from": {"checkpoint": str(args.checkpoint), "step": int(src.get("step", 0)),
                         "first_width": args.first_width, "last_width": args.last_width,
                         "skip": bool(args.skip)},
    })
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in new.parameters())
    print(f"wrote {args.out}: {before:,} -> {after:,} parameters "
          f"(first width {new.config['first_width']}, last width {new.config['last_width']}, "
          f"skip {new.config['skip']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
