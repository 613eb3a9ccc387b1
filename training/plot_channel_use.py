"""How many latent channels a model uses: the share of nonzero symbols per channel at the top
quality on validation crops, sorted, one curve per model (a PNG).

    python training/plot_channel_use.py --val ../shared/data/val -o channel_use.png \
        fcf64-v3 fcf64-v4

Each model is a shipped model id or a training checkpoint (its EMA weights). A channel whose
symbols are (almost) all zero tells the decoder nothing at any quality: see
``fastcodec.models.slim.dead_channels`` / ``revive``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def _load(name: str):
    if Path(name).is_file():
        from fastcodec.train.checkpoints import load_model

        return load_model(name)
    from fastcodec import zoo

    return zoo.load_model(name).model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="shipped model ids or training checkpoints")
    p.add_argument("--val", default="../shared/data/val", help="validation images")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("-o", "--out", default="channel_use.png")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastcodec.models.slim import channel_activity
    from fastcodec.train.data import load_val

    images = load_val(args.val, args.crop)
    if images is None:
        raise SystemExit(f"no images under {args.val}")
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in args.models:
        use = torch.sort(channel_activity(_load(name), images)[0], descending=True).values
        live = int((use >= 1e-2).sum())
        ax.plot(range(1, len(use) + 1), use.numpy(), label=f"{Path(name).stem}: {live} of "
                f"{len(use)} channels nonzero at >= 1% of positions")
        print(f"{name}: {live} of {len(use)} latent channels in use")
    ax.set_xlabel("latent channel (sorted)")
    ax.set_ylabel("share of nonzero symbols, top quality")
    ax.set_title(f"Latent channel use on {images.shape[0]} validation crops")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
