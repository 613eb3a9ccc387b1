"""The command line of ``fastcodec eval``: its options, ``run`` from parsed arguments and
``main``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fastcodec.evaluate.common import (ANCHOR_QUALITIES, ANCHORS, AVIF_SPEED, BD_RANGE,
                                      DEFAULT_QUALITIES, LABELS, EvalError)
from fastcodec.evaluate.evaluation import evaluate
from fastcodec.evaluate.report import bd_lines, plot, table_lines, to_json


def _parse_list(text: str, kind, what: str) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise EvalError(f"{what}: expected a comma-separated list of numbers, "
                        f"got {text!r}") from None


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the options of ``fastcodec eval`` to ``parser`` (the subcommand's parser)."""
    from fastcodec.cli import refine_steps_arg  # the same --refine as `fastcodec compress`

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = ("Rate-distortion evaluation: fastcodec against Pillow's JPEG, WebP "
                          "and AVIF (bpp from the real encoded bytes, RGB PSNR, MS-SSIM, "
                          f"BD-rate vs JPEG over the curves' overlap and {BD_RANGE[0]:g}-"
                          f"{BD_RANGE[1]:g} dB).")
    parser.epilog = (
        "examples:\n"
        "  fastcodec eval                                  # the bundled samples\n"
        "  fastcodec eval ~/data/kodak --device cuda\n"
        "  fastcodec eval ~/data/kodak --anchors-only      # JPEG/WebP/AVIF only\n"
        "  fastcodec eval imgs/ --qualities 2,4 --anchors jpeg --max-images 4 --json\n"
        "Writes <out>/results.json and <out>/rd.png; progress goes to stderr.")
    parser.add_argument("inputs", nargs="*", metavar="DIR",
                        help="image folders or files (default: the bundled sample images)")
    parser.add_argument("--qualities", default=",".join(f"{q:g}" for q in DEFAULT_QUALITIES),
                        help="fastcodec public qualities, comma-separated, 1..6 (default: "
                             "%(default)s; '' for anchors only)")
    parser.add_argument("--anchors", default=",".join(ANCHORS),
                        help="anchors to run, comma-separated from jpeg,webp,avif "
                             "(default: %(default)s; '' for none)")
    parser.add_argument("--anchors-only", action="store_true",
                        help="run only the anchors (same as --qualities '')")
    for name in ANCHORS:
        parser.add_argument(f"--{name}-qualities", metavar="Q,Q,...",
                            default=",".join(map(str, ANCHOR_QUALITIES[name])),
                            help=f"{LABELS[name]} quality sweep (default: %(default)s)")
    parser.add_argument("--avif-speed", type=int, default=AVIF_SPEED,
                        help="libavif encoder speed 0..10 (default: %(default)s)")
    parser.add_argument("--model", default=None, help="fastcodec model id (default: the zoo's)")
    parser.add_argument("--refine", type=refine_steps_arg, default=0, metavar="STEPS",
                        help="fastcodec's encoder-side latent refinement steps per image "
                             "(default 0: off; each step costs about 4 decodes)")
    parser.add_argument("--device", default=None,
                        help="device for fastcodec (default: the Codec's choice)")
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help="evaluate only the first N images")
    parser.add_argument("-o", "--out", default="fastcodec-eval",
                        help="output folder for results.json and rd.png (default: %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="do not write rd.png")
    parser.add_argument("--json", action="store_true",
                        help="print the results JSON on stdout instead of the tables")
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    return configure_parser(argparse.ArgumentParser(prog="fastcodec eval"))


def _progress_to_stderr(line: str) -> None:
    print(f"eval: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Runs ``fastcodec eval`` from parsed arguments; returns the exit status."""
    try:
        return _run(args)
    except EvalError as exc:
        print(f"fastcodec eval: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from fastcodec.samples import sample_paths

    qualities = [] if args.anchors_only else _parse_list(args.qualities, float, "--qualities")
    anchors = [a.strip().lower() for a in args.anchors.split(",") if a.strip()]
    sweeps = {name: _parse_list(getattr(args, f"{name}_qualities"), int, f"--{name}-qualities")
              for name in ANCHORS}
    if not 0 <= args.avif_speed <= 10:
        raise EvalError(f"--avif-speed must be in 0..10, got {args.avif_speed}")
    inputs = args.inputs or sample_paths()
    t0 = time.perf_counter()
    results = evaluate(inputs, qualities, anchors, args.device, anchor_qualities=sweeps,
                       avif_speed=args.avif_speed, model=args.model, max_images=args.max_images,
                       progress=_progress_to_stderr, refine_steps=args.refine)
    results["environment"]["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = to_json(results)
    (out / "results.json").write_text(text)
    written = [out / "results.json"]
    if not args.no_plot:
        written.append(plot(results, out / "rd.png"))
    if args.json:
        sys.stdout.write(text)
    else:
        print("\n".join(table_lines(results)))
        print()
        print("\n".join(bd_lines(results)))
        print()
        print("written: " + ", ".join(str(p) for p in written))
    return 0


def main(argv=None) -> int:
    """Entry point for ``python -m fastcodec.evaluate``: ``argv`` after the command name."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return args.run(args)
