"""training/plot_val_progress.py: BD-rate of a run's validation curves against a reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _fastcodec_test_helpers import training_script


@pytest.fixture(scope="module")
def script():
    return training_script("plot_val_progress")


BPP = [0.12, 0.28, 0.5, 0.77, 1.06, 1.37]
PSNR = [22.5, 24.9, 27.0, 28.6, 29.4, 29.8]


def _log(path: Path, curves) -> Path:
    """A log.jsonl with train lines between validation lines ``(step, bpp scale, dB shift)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for step, scale, shift in curves:
        lines.append({"event": "train", "step": step, "loss": 1.0})
        lines.append({"event": "val", "step": step, "bpp": [b * scale for b in BPP],
                      "psnr": [p + shift for p in PSNR], "psnr_ceiling": PSNR[-1] + shift + 0.2})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_bd_rate_against_the_reference_follows_the_rate_scale(script, tmp_path, capsys):
    ref = _log(tmp_path / "ref" / "log.jsonl", [(1000, 1.2, 0.0), (2000, 1.0, 0.0)])
    run = _log(tmp_path / "run" / "log.jsonl", [(0, 1.0, 0.0), (2000, 0.9, 0.0), (4000, 0.8, 0.0)])
    rows = script.progress(script.read_val(run), script.reference_curve(str(ref))[0])
    assert [r["step"] for r in rows] == [0, 2000, 4000]
    # the same PSNR at 0.9x / 0.8x the bits: -10% / -20% exactly
    assert [r["bd_rate"] for r in rows] == pytest.approx([0.0, -10.0, -20.0], abs=1e-6)
    first, label = script.reference_curve(f"{ref}:1000")
    assert first["step"] == 1000 and label == "ref step 1000"
    rows = script.progress(script.read_val(run), first)
    assert rows[0]["bd_rate"] == pytest.approx(100 * (1 / 1.2 - 1), abs=1e-6)
    with pytest.raises(ValueError, match="no validation at step 5"):
        script.reference_curve(f"{ref}:5")
    out = tmp_path / "p.png"
    assert script.main([str(run), "--reference", str(ref), "-o", str(out)]) == 0
    assert out.stat().st_size > 1000 and "-20.00%" in capsys.readouterr().out
