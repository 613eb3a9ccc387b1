"""training/decoder_ceiling.py: the decoder's PSNR from the encoder's latent and from the best
latent gradient descent finds."""

from __future__ import annotations

import torch

from _fastcodec_test_helpers import training_script
from fastcodec.models import CodecModel


def test_the_optimized_latent_beats_the_encoders_and_the_model_is_left_alone(tiny_images, capsys):
    ceiling = training_script("decoder_ceiling")
    from fastcodec import zoo

    model = zoo.load_file(zoo.weights_path()).model  # a private copy: the test changes flags
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = ceiling.load_crops(str(tiny_images), 3, 32)
    assert x.shape == (3, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    out = ceiling.ceilings(model, x, steps=60, lr=0.05)
    assert [s for s, _ in out["history"]] == [50, 60]
    assert out["decoder"] > out["encoder"] + 0.1  # no encoder is the best for every image
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert ceiling.psnr(x, x) > 100  # 8-bit images round to themselves
    assert ceiling.load_crops(str(tiny_images), 2, 48).shape[0] == 2


def test_command_line_prints_both_numbers(tiny_images, tmp_path, capsys):
    ceiling = training_script("decoder_ceiling")
    path = tmp_path / "ckpt.pt"
    torch.save({"model": CodecModel(N=8, M=8).state_dict(),
                "model_config": CodecModel(N=8, M=8).config}, path)
    assert ceiling.main([str(path), "--val", str(tiny_images), "--images", "2", "--crop", "32",
                         "--steps", "50"]) == 0
    line = capsys.readouterr().out
    assert "2 crops of 32px" in line and "dB (+" in line
