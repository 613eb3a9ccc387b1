"""A few steps of the training loop on tiny images: the loss goes down, checkpoints resume the
step count (and the run, exactly), validation reports every quality, the CLI forwards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fastcodec.models.codec_model import DEFAULT_LAMBDAS
from fastcodec.train import loop
from fastcodec.train import main as train_main
from fastcodec.train.checkpoints import load_checkpoint, load_model, save_checkpoint
from fastcodec.train.options import build_parser
from fastcodec.train.schedule import learning_rate

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _args(data, out, *extra):
    return build_parser().parse_args(
        [
            "--data", str(data), "--val", str(data), "--out", str(out),
            "--N", "8", "--M", "8", "--crop", "32", "--batch-size", "4", "--lr", "3e-3",
            "--warmup", "1", "--log-every", "5", "--val-every", "0", "--val-crop", "32",
            "--ckpt-every", "10", "--threads", "1", *extra,
        ]
    )


def _log(out: Path) -> list:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_loss_decreases_and_resume_continues_exactly(tiny_images, tmp_path):
    # 60 steps in one go
    full = tmp_path / "full"
    loop.run(_args(tiny_images, full, "--steps", "60"))
    train = [r for r in _log(full) if r["event"] == "train"]
    assert [r["step"] for r in train] == list(range(5, 61, 5))
    first, last = train[0], train[-1]
    assert last["loss"] < 0.7 * first["loss"], (first, last)
    for key in ("bpp", "psnr", "steps_per_s", "mp_per_s", "aux", "lr"):
        assert np.isfinite(last[key])
    assert len(last["bpp_per_q"]) == len(last["psnr_per_q"]) == len(DEFAULT_LAMBDAS)
    val = [r for r in _log(full) if r["event"] == "val"]
    assert len(val) == 1 and val[0]["step"] == 60  # end-of-run validation, every quality
    assert len(val[0]["bpp"]) == len(val[0]["psnr"]) == len(DEFAULT_LAMBDAS)
    assert np.isfinite(val[0]["psnr_ceiling"])
    ckpt = load_checkpoint(full / "latest.pt")
    assert ckpt["step"] == 60
    assert {"model", "model_config", "optimizer", "aux_optimizer", "rng", "args"} <= set(ckpt)

    # 30 steps, then resume to 60: the step count continues and the weights are the same
    part = tmp_path / "part"
    loop.run(_args(tiny_images, part, "--steps", "30"))
    assert load_checkpoint(part / "latest.pt")["step"] == 30
    loop.run(_args(tiny_images, part, "--steps", "60", "--resume", "auto"))
    starts = [r for r in _log(part) if r["event"] == "start"]
    assert [s["step"] for s in starts] == [0, 30]
    resumed = load_checkpoint(part / "latest.pt")
    assert resumed["step"] == 60
    for name, value in ckpt["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=1e-5, atol=1e-6)
    # the weight average is kept, resumed with the rest, and differs from the raw weights
    assert resumed["ema_decay"] == 0.999 and set(resumed["ema"]) == set(resumed["model"])
    for name, value in ckpt["ema"].items():
        torch.testing.assert_close(resumed["ema"][name], value, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ckpt["ema"]["g_a.head.weight"], ckpt["model"]["g_a.head.weight"])

    # the checkpoint loads as a ready-to-use model
    model = load_model(part / "latest.pt")
    assert not model.training and model.M == 8


def test_periodic_snapshots_and_time_checkpoints(tiny_images, tmp_path):
    out = tmp_path / "snap"
    loop.run(_args(tiny_images, out, "--steps", "12", "--keep-every", "6", "--ckpt-every", "0",
                   "--ckpt-every-minutes", "0", "--val", ""))
    assert (out / "step_00000006.pt").exists() and (out / "step_00000012.pt").exists()
    assert load_checkpoint(out / "latest.pt")["step"] == 12
    assert not list(out.glob("*.tmp"))


@pytest.mark.skipif(not (DATA / "train").is_dir(), reason="../shared/data is not there")
def test_a_few_steps_on_real_data(tmp_path):
    args = build_parser().parse_args(
        [
            "--data", str(DATA / "train"), "--val", str(DATA / "val"), "--out", str(tmp_path),
            "--max-images", "4", "--val-max-images", "2", "--val-crop", "64", "--N", "8",
            "--M", "8", "--crop", "64", "--batch-size", "2", "--steps", "4", "--log-every", "2",
            "--val-every", "4", "--threads", "1",
        ]
    )
    last = loop.run(args)
    assert last["step"] == 4 and np.isfinite(last["loss"])
    start = _log(tmp_path)[0]
    assert start["images"] == 4 and start["val_images"] == 2


def test_cli_forwards_train(tmp_path, tiny_images, capsys):
    from fastcodec.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--ckpt-every-minutes" in text
    # defaults are shown (0 included), options that explain theirs are not repeated
    assert "--batch-size BATCH_SIZE crops per step (per rank) (default: 8)" in text
    assert "(default: 0)" in text and "(default: None)" not in text
    assert main(["train", *(_args_list(tiny_images, tmp_path / "cli"))]) == 0
    assert load_checkpoint(tmp_path / "cli" / "latest.pt")["step"] == 3


def _args_list(data, out):
    return ["--data", str(data), "--val", "", "--out", str(out), "--N", "8", "--M", "8",
            "--crop", "32", "--batch-size", "2", "--steps", "3", "--threads", "1"]


def test_learning_rate_schedule():
    args = build_parser().parse_args(
        ["--data", "d", "--out", "x", "--lr", "1e-3", "--warmup", "10", "--lr-decay-at", "100",
         "200"]
    )
    assert learning_rate(args, 0) == pytest.approx(1e-4)
    assert learning_rate(args, 50) == pytest.approx(1e-3)
    assert learning_rate(args, 150) == pytest.approx(1e-4)
    assert learning_rate(args, 250) == pytest.approx(1e-5)
    # a fresh optimizer at step 1000 warms up again; the decay steps stay absolute
    assert learning_rate(args, 1004, opt_start=1000) == pytest.approx(0.5 * 1e-5)
    assert learning_rate(args, 1010, opt_start=1000) == pytest.approx(1e-5)


def test_a_weights_only_resume_warms_up_a_fresh_optimizer(tiny_images, tmp_path):
    """Committed checkpoints hold weights only: Adam starts fresh there, so --warmup counts from
    the resumed step (and a later full checkpoint carries on where that warm-up was)."""
    first = tmp_path / "first"
    loop.run(_args(tiny_images, first, "--steps", "5", "--val", ""))
    full = load_checkpoint(first / "latest.pt")
    light = tmp_path / "weights.pt"
    save_checkpoint(light, {"model": full["ema"], "model_config": full["model_config"],
                            "step": 5})
    out = tmp_path / "resumed"
    loop.run(_args(tiny_images, out, "--steps", "8", "--val", "", "--resume", str(light),
                   "--warmup", "4", "--log-every", "1", "--lr", "1e-3", "--ckpt-every", "7"))
    lrs = {r["step"]: r["lr"] for r in _log(out) if r["event"] == "train"}
    assert lrs == pytest.approx({6: 2.5e-4, 7: 5e-4, 8: 7.5e-4})
    assert load_checkpoint(out / "latest.pt")["opt_start"] == 5
    # resuming that full checkpoint continues the same warm-up
    loop.run(_args(tiny_images, out, "--steps", "9", "--val", "", "--resume", "auto",
                   "--warmup", "4", "--log-every", "1", "--lr", "1e-3"))
    assert [r["lr"] for r in _log(out) if r["event"] == "train"][-1] == pytest.approx(1e-3)


def test_freeze_synthesis_trains_the_encoder_side_only(tiny_images, tmp_path):
    """A wider analysis trained against a fixed decoder: the synthesis and the inverse gains
    keep their weights (in the model and its average), the analysis, gains and prior learn."""
    first = tmp_path / "first"
    loop.run(_args(tiny_images, first, "--steps", "3", "--val", "", "--analysis-width", "12"))
    start = load_checkpoint(first / "latest.pt")
    assert start["model_config"]["analysis_width"] == 12
    light = tmp_path / "weights.pt"  # raw and averaged weights differ: the averaged are kept
    save_checkpoint(light, {"model": start["model"], "ema": start["ema"],
                            "model_config": start["model_config"], "step": 3})
    assert not torch.equal(start["model"]["g_s.out.weight"], start["ema"]["g_s.out.weight"])
    out = tmp_path / "frozen"
    loop.run(_args(tiny_images, out, "--steps", "8", "--val", "", "--resume", str(light),
                   "--freeze-synthesis"))
    end = load_checkpoint(out / "latest.pt")
    before = start["ema"]
    for weights in (end["model"], end["ema"]):
        for key, value in before.items():
            frozen = key.startswith("g_s.") or key == "log_inv_gain"
            if frozen or key == "lambdas":
                assert torch.equal(weights[key], value), key
        for key in ("g_a.blocks.1.weight", "g_a.head.weight", "log_gain"):
            assert not torch.equal(weights[key], before[key]), key
    assert load_model(out / "latest.pt").g_a.blocks[2].weight.shape[:2] == (12, 12)


def test_freeze_synthesis_continues_a_full_checkpoint_with_fresh_optimizers(tiny_images,
                                                                            tmp_path, capsys):
    """A full checkpoint of an unfrozen run, resumed with --freeze-synthesis: its Adam state
    covered the synthesis, so the optimizers start fresh at its step (with a note), and the
    decoder keeps the averaged weights."""
    first = tmp_path / "first"
    loop.run(_args(tiny_images, first, "--steps", "3", "--val", ""))
    start = load_checkpoint(first / "latest.pt")
    out = tmp_path / "frozen"
    loop.run(_args(tiny_images, out, "--steps", "6", "--val", "", "--resume",
                   str(first / "latest.pt"), "--freeze-synthesis"))
    assert "fresh optimizers from step 3" in capsys.readouterr().out
    end = load_checkpoint(out / "latest.pt")
    assert end["step"] == 6 and end["opt_start"] == 3
    for key, value in start["ema"].items():
        if key.startswith("g_s.") or key == "log_inv_gain":
            assert torch.equal(end["model"][key], value), key
    assert not torch.equal(end["model"]["g_a.head.weight"], start["model"]["g_a.head.weight"])


def test_usage_errors_are_one_line_and_write_nothing(tiny_images, tmp_path, capsys):
    base = ["--data", str(tiny_images), "--N", "8", "--M", "8", "--crop", "32",
            "--batch-size", "2", "--steps", "2", "--threads", "1", "--val", ""]
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    cases = [
        (["--data", str(tmp_path / "nope")], "image folder not found"),
        (["--data", str(empty)], "no training images"),
        (["--crop", "40"], "multiple of 16"),
        (["--val", str(tmp_path / "nope")], "image folder not found"),
        (["--val", str(tiny_images), "--val-crop", "64"], "at least 64x64"),
        (["--resume", str(junk)], "is not a readable checkpoint"),
        (["--resume", str(tmp_path / "missing.pt")], "no checkpoint"),
        (["--resume", "fcf00-none"], "no checkpoint fcf00-none"),
        (["--resume", str(tiny_images)], "is not a readable checkpoint"),
        (["--ema-decay", "1.0"], "--ema-decay must be in [0, 1), got 1.0"),
        (["--amp", "fp16", "--device", "cpu"], "--amp fp16 is for CUDA"),
        (["--revive-hold", "-1"], "--revive-hold must be >= 0, got -1"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        assert train_main([*base, "--out", str(out), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("fastcodec train: error: ") and message in err, (extra, err)
        assert len(err.strip().splitlines()) == 1 and not out.exists()

    # model options that contradict the resumed checkpoint are refused ...
    run = tmp_path / "run"
    assert train_main([*base, "--out", str(run)]) == 0
    before = (run / "latest.pt").read_bytes()
    assert train_main([*base, "--out", str(run), "--resume", "auto", "--steps", "4", "--N", "16",
                       "--skip"]) == 2
    err = capsys.readouterr().err
    assert "--N 16 (checkpoint: 8)" in err and "--skip True (checkpoint: False)" in err
    # ... and a run already at --steps does nothing (its checkpoint stays as it was)
    assert train_main([*base, "--out", str(run), "--resume", "auto", "--steps", "1"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (run / "latest.pt").read_bytes() == before
    with pytest.raises(SystemExit):  # --log-every 0 would divide by zero
        build_parser().parse_args([*base, "--out", "x", "--log-every", "0"])


@pytest.mark.parametrize("amp,layout", [("bf16", "auto"), ("none", "contiguous")])
def test_cpu_bf16_and_memory_formats(tmp_path, tiny_images, amp, layout):
    """bf16 autocast runs on CPU (fp16 is refused there); either layout trains."""
    out = tmp_path / amp
    last = loop.run(build_parser().parse_args(
        [*_args_list(tiny_images, out), "--amp", amp, "--memory-format", layout]))
    assert last["step"] == 3 and np.isfinite(last["loss"])
    assert _log(out)[0]["amp"] == amp
    assert loop.resolve_memory_format("auto", torch.device("cpu")) == torch.channels_last
    assert loop.resolve_memory_format("auto", torch.device("cuda")) == torch.contiguous_format
    with pytest.raises(ValueError, match="fp16"):
        loop.run(build_parser().parse_args([*_args_list(tiny_images, out), "--amp", "fp16"]))


def test_a_second_trainer_in_the_same_folder_is_refused(tiny_images, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    held = loop._lock_folder(out)  # what a running trainer holds
    if held is None:
        pytest.skip("no fcntl here")
    args = ["--data", str(tiny_images), "--out", str(out), "--N", "8", "--M", "8", "--crop",
            "32", "--batch-size", "2", "--steps", "2", "--threads", "1"]
    try:
        assert train_main(args) == 2
        assert "another fastcodec train is running" in capsys.readouterr().err
        assert not (out / "latest.pt").exists()
    finally:
        held.close()
    assert train_main(args) == 0 and (out / "latest.pt").exists()
    assert train_main([*args, "--steps", "3", "--resume", "auto"]) == 0  # released at the end
