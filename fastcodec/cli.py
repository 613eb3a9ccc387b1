"""The ``fastcodec`` command line (also ``python -m fastcodec``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _demo(args: argparse.Namespace) -> int:
    from fastcodec import lossless
    from fastcodec.samples import sample_paths

    paths = [Path(p) for p in args.images] or sample_paths()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'image':<16}{'size':>11}{'PNG bpp':>9}{'fastcodec bpp':>15}{'enc MP/s':>10}{'dec MP/s':>10}  roundtrip")
    for path in paths:
        image = _load_rgb(path)
        pixels = image.shape[0] * image.shape[1]
        t0 = time.perf_counter()
        blob = lossless.encode(image)
        t1 = time.perf_counter()
        decoded = lossless.decode(blob)
        t2 = time.perf_counter()
        exact = bool(np.array_equal(decoded, image))
        (out_dir / (path.stem + ".fcl")).write_bytes(blob)
        row = {
            "image": path.name,
            "height": image.shape[0],
            "width": image.shape[1],
            "png_bpp": 8 * path.stat().st_size / pixels,
            "bpp": 8 * len(blob) / pixels,
            "encode_mp_per_s": pixels / (t1 - t0) / 1e6,
            "decode_mp_per_s": pixels / (t2 - t1) / 1e6,
            "exact": exact,
        }
        rows.append(row)
        print(f"{path.name:<16}{image.shape[1]:>5}x{image.shape[0]:<5}{row['png_bpp']:>9.3f}{row['bpp']:>15.3f}"
              f"{row['encode_mp_per_s']:>10.1f}{row['decode_mp_per_s']:>10.1f}  {'exact' if exact else 'MISMATCH'}")
    (out_dir / "demo.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nLossless range-coded streams and demo.json written to {out_dir}/")
    print("(The learned lossy codec replaces this lossless demo once its weights ship.)")
    return 0 if all(r["exact"] for r in rows) else 1


def _train(args: argparse.Namespace) -> int:
    from fastcodec.train import main as train_main

    return train_main(args.train_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastcodec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="code the bundled sample images (or IMAGES) and report bpp and speed")
    demo.add_argument("images", nargs="*", help="image files (default: the bundled samples)")
    demo.add_argument("-o", "--out", default="fastcodec-demo", help="output folder (default: %(default)s)")
    demo.set_defaults(run=_demo)
    from fastcodec import bench  # options, help and run() live there (stdlib-only import)

    bench.configure_parser(sub.add_parser("bench", help="run the benchmark suite; store, compare, plot"))
    train = sub.add_parser(
        "train", add_help=False,
        help="train the learned codec (options: fastcodec train --help)",
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(run=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "train":  # its options are parsed by fastcodec.train itself
        return _train(argparse.Namespace(train_args=argv[1:]))
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
