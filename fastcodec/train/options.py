"""The options of ``fastcodec train`` (its argument parser), the model config they give and
TrainError, the usage error the command reports in one line."""

from __future__ import annotations

import argparse

from fastcodec.models.codec_model import DEFAULT_LAMBDAS


class TrainError(ValueError):
    """A usage problem found before training starts (``fastcodec train`` exits with status 2)."""


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
