"""Shipped weights (fastcodec.zoo): quality grid, export, loading, stored tables."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fastcodec import zoo
from fastcodec.engine import Engine
from fastcodec.models import CodecModel

GRID = tuple(1 + 0.25 * i for i in range(21))
TINY = dict(N=8, M=8)


# ------------------------------------------------------------------------------------ quality
@pytest.mark.parametrize("q, want", [(1, 1.0), (6, 6.0), (3.3, 3.25), (3.375, 3.5),
                                     (3.37, 3.25), (1.12, 1.0), (np.float32(4.9), 5.0)])
def test_snap_quality(q, want):
    assert zoo.snap_quality(q) == want


@pytest.mark.parametrize("q", [0.99, 6.01, -1, math.nan, math.inf])
def test_snap_quality_range(q):
    with pytest.raises(ValueError, match=r"\[1, 6\]"):
        zoo.snap_quality(q)


@pytest.mark.parametrize("q", ["4", None, True, [4]])
def test_snap_quality_type(q):
    with pytest.raises(TypeError, match="quality"):
        zoo.snap_quality(q)


def test_grid():
    assert zoo.grid_qualities(6) == GRID
    assert all(zoo.snap_quality(q) == q for q in GRID)


# ------------------------------------------------------------------------------------ shipped
def test_default_model_is_installed_and_cached():
    assert zoo.DEFAULT_MODEL in zoo.available_models()
    shipped = zoo.load_model()
    assert zoo.load_model(zoo.DEFAULT_MODEL, "cpu") is shipped
    path = zoo.weights_path()
    assert shipped.weights_hash == hashlib.sha256(path.read_bytes()).digest()[:8]
    assert shipped.model_id == zoo.DEFAULT_MODEL
    assert shipped.qualities == GRID
    assert not shipped.model.training
    md = shipped.metadata
    assert md["format_version"] in (1, zoo.FORMAT_VERSION) and md["step"] > 0
    assert md["source"].endswith(".pt") and md["exported"]
    assert md["lambdas"] == pytest.approx(shipped.model.lambdas.tolist())


@pytest.mark.parametrize("model_id", zoo.available_models())
def test_weights_file_is_plain_data(model_id):
    obj = torch.load(zoo.weights_path(model_id), map_location="cpu", weights_only=True)
    assert set(obj) == {"format", "format_version", "model_id", "model_config", "state_dict",
                        "tables", "metadata"}
    assert all(v.dtype == torch.float32 for v in obj["state_dict"].values())
    assert [t["quality"] for t in obj["tables"]] == list(GRID)
    t = obj["tables"][0]
    rows = t["cdfs"] if obj["format_version"] == 1 else t["cdf_values"]
    assert rows.dtype == torch.int32 and t["medians"].dtype == torch.float32
    # every installed model loads, whichever format version wrote it
    shipped = zoo.load_model(model_id)
    assert shipped.qualities == GRID and shipped.model_id == model_id


@pytest.mark.parametrize("bad", ["nope", "../fcf64-v1", "", "a" * 40])
def test_unknown_model(bad):
    with pytest.raises(ValueError, match="unknown model|model id"):
        zoo.load_model(bad)


def test_stored_tables_equal_a_fresh_export():
    """The stored tables are the weights' own. A fresh export runs the density network in
    float32 on this CPU: the medians may differ in the last bit from the exporting machine's
    (seen between AMD and Intel AVX-512 builds), which is why coding uses the stored ones."""
    shipped = zoo.load_model()
    fresh = CodecModel.from_config(shipped.model.config)
    fresh.load_state_dict(shipped.model.state_dict())
    fresh.eval()
    for q in (1.0, 3.25, 6.0):
        a, b = shipped.tables[q], fresh.export_tables(q - 1)
        for name in ("cdfs", "cdf_lengths", "offsets"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        np.testing.assert_allclose(a.medians, b.medians, rtol=1e-6, atol=1e-9)
        assert a.precision == b.precision


def test_coding_never_recomputes_tables(monkeypatch):
    shipped = zoo.load_model()
    model = shipped.model

    def refuse(*args, **kwargs):
        raise AssertionError("tables were recomputed from the network")

    monkeypatch.setattr(model.entropy, "export_tables", refuse)
    before = dict(model._tables)
    eng = Engine(shipped, threads=1)
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for q in (2.0, 4.75):
        (shape, streams), = eng.encode([img], q)
        assert model.export_tables(q - 1) is shipped.tables[q]
    # every installed table is still the very object loaded from the file
    assert all(model._tables[k] is before[k] for k in before)
    assert set(model._tables) == set(before)


# ------------------------------------------------------------------------------------ export
def _tiny_checkpoint(path, step=123):
    torch.manual_seed(0)
    model = CodecModel(**TINY)
    opt = torch.optim.Adam(model.parameters())
    torch.save({"model": model.state_dict(), "model_config": model.config,
                "optimizer": opt.state_dict(), "step": step, "args": {"lr": 1.0}}, path)
    return model


def test_export_and_load_roundtrip(tmp_path):
    model = _tiny_checkpoint(tmp_path / "latest.pt")
    out = zoo.export_checkpoint(tmp_path / "latest.pt", tmp_path / "w" / "tiny-1.pt", "tiny-1")
    assert out == tmp_path / "w" / "tiny-1.pt"
    assert [p.name for p in out.parent.iterdir()] == ["tiny-1.pt"]  # no temporary left behind
    obj = torch.load(out, weights_only=True)
    assert "optimizer" not in obj and "args" not in obj
    shipped = zoo.load_file(out)
    assert shipped.model_id == "tiny-1" and shipped.metadata["step"] == 123
    assert shipped.metadata["source"] == "latest.pt"
    assert shipped.weights_hash == hashlib.sha256(out.read_bytes()).digest()[:8]
    for k, v in model.state_dict().items():
        if k != "entropy.quantiles":  # refit at export, see below
            torch.testing.assert_close(shipped.model.state_dict()[k], v, rtol=0, atol=0)
    refit = shipped.metadata["quantile_refit"]
    assert refit["aux_after"] < 1e-3 < refit["aux_before"]
    assert shipped.metadata["weights"] == "raw"
    model.entropy.fit_quantiles()
    torch.testing.assert_close(shipped.model.entropy.quantiles, model.entropy.quantiles,
                               rtol=0, atol=0)
    ref = model.eval().tables_state([q - 1 for q in GRID])
    for q in GRID:
        np.testing.assert_array_equal(shipped.tables[q].cdfs, ref[q - 1]["cdfs"])
        np.testing.assert_array_equal(shipped.tables[q].medians, ref[q - 1]["medians"])
    # the exported model codes and decodes through the engine
    from fastcodec.container import pack

    eng = Engine(shipped, threads=1)
    img = np.random.default_rng(1).integers(0, 256, (17, 33, 3), dtype=np.uint8)
    (shape, streams), = eng.encode([img], 2.5)
    blob = pack(model_id="tiny-1", weights_hash=shipped.weights_hash, quality=2.5, height=17,
                width=33, layout="rgb", latent_shape=shape, streams=streams)
    (_, rgb), = eng.decode([blob])
    assert rgb.shape == (17, 33, 3) and rgb.dtype == np.uint8


def _as_version_1(obj: dict) -> dict:
    """A format-2 weights dict rewritten the way format 1 stored it (rows padded)."""
    tables = []
    for t in obj["tables"]:
        t = dict(t)
        rows = torch.split(t.pop("cdf_values"), t["cdf_lengths"].tolist())
        width = max(len(r) for r in rows)
        t["cdfs"] = torch.stack([torch.cat([r, r[-1:].expand(width - len(r))]) for r in rows])
        tables.append(t)
    return {**obj, "format_version": 1, "tables": tables}


def test_tables_are_stored_without_padding_and_version_1_files_still_load(tmp_path):
    _tiny_checkpoint(tmp_path / "latest.pt")
    out = zoo.export_checkpoint(tmp_path / "latest.pt", tmp_path / "t2" / "t.pt", "t")
    obj = torch.load(out, weights_only=True)
    assert obj["format_version"] == zoo.FORMAT_VERSION == 2
    for t in obj["tables"]:
        assert "cdfs" not in t
        assert t["cdf_values"].shape == (int(t["cdf_lengths"].sum()),)
    new = zoo.load_file(out)
    torch.save(_as_version_1(obj), tmp_path / "t1.pt")
    old = zoo.load_file(tmp_path / "t1.pt")
    for q in GRID:
        for name in ("cdfs", "cdf_lengths", "offsets", "medians"):
            np.testing.assert_array_equal(getattr(old.tables[q], name),
                                          getattr(new.tables[q], name), err_msg=name)


@pytest.mark.parametrize("damage, match", [
    (lambda o: o.update(format_version=3), "version 3 is not supported"),
    (lambda o: o.update(format_version=True), "version True is not supported"),
    (lambda o: o["tables"][4].update(cdf_values=o["tables"][4]["cdf_values"][:-1]),
     "does not split into rows"),
    (lambda o: o["tables"][0].pop("cdf_lengths"), "lacks its 'cdf_lengths'"),
    (lambda o: o["tables"][2].update(cdf_values=o["tables"][2]["cdf_values"][None]),
     "does not split into rows"),
])
def test_damaged_weights_files_are_refused_clearly(tmp_path, damage, match):
    _tiny_checkpoint(tmp_path / "latest.pt")
    obj = torch.load(zoo.export_checkpoint(tmp_path / "latest.pt", tmp_path / "w" / "t.pt", "t"),
                     weights_only=True)
    damage(obj)
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=match):
        zoo.load_file(tmp_path / "bad.pt")


def test_export_prefers_the_weight_average(tmp_path):
    model = _tiny_checkpoint(tmp_path / "latest.pt")
    ckpt = torch.load(tmp_path / "latest.pt", weights_only=False)
    ema = {k: v + 0.5 if k.startswith("g_s.") else v for k, v in ckpt["model"].items()}
    torch.save({**ckpt, "ema": ema, "ema_decay": 0.999}, tmp_path / "latest.pt")
    shipped = zoo.load_file(zoo.export_checkpoint(tmp_path / "latest.pt", tmp_path / "t.pt", "t"))
    assert shipped.metadata["weights"] == "ema(0.999)"
    key = next(k for k in ema if k.startswith("g_s."))
    torch.testing.assert_close(shipped.model.state_dict()[key], ema[key], rtol=0, atol=0)
    assert not torch.equal(shipped.model.state_dict()[key], model.state_dict()[key])


def test_export_rejects_other_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a fastcodec training checkpoint"):
        zoo.export_checkpoint(tmp_path / "x.pt", tmp_path / "o.pt", "o")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        zoo.export_checkpoint(tmp_path / "junk.pt", tmp_path / "o.pt", "o")
    with pytest.raises(ValueError, match="model id"):
        zoo.export_checkpoint(tmp_path / "x.pt", tmp_path / "o.pt", model_id="a b")
    assert not (tmp_path / "o.pt").exists()
    with pytest.raises(ValueError, match="not a fastcodec weights file"):
        zoo.load_file(tmp_path / "x.pt")


def test_export_cli(tmp_path, capsys):
    """``python -m fastcodec.zoo export`` (its main(), in process: a subprocess would spend
    seconds importing torch)."""
    _tiny_checkpoint(tmp_path / "ck.pt", step=7)
    out = tmp_path / "tiny-2.pt"
    args = ["export", str(tmp_path / "ck.pt"), "-o", str(out), "--model-id", "tiny-2"]
    assert zoo.main(args) == 0
    printed = capsys.readouterr().out
    assert "model tiny-2" in printed and "step 7" in printed
    assert zoo.load_file(out).model_id == "tiny-2"
    # shipped weights are never replaced by accident: files record their hash
    before = out.read_bytes()
    assert zoo.main(args) == 1
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert zoo.main(args + ["--force"]) == 0
    # the file is found by its name, and an installed id is never shadowed
    assert zoo.main(["export", str(tmp_path / "ck.pt"), "-o", str(tmp_path / "other.pt"),
                     "--model-id", "tiny-3"]) == 1
    assert "must be named tiny-3.pt" in capsys.readouterr().err
    assert zoo.main(["export", str(tmp_path / "ck.pt"), "-o", str(tmp_path / "v" /
                     f"{zoo.DEFAULT_MODEL}.pt"), "--model-id", zoo.DEFAULT_MODEL]) == 1
    assert "already installed" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
    with pytest.raises(SystemExit):  # the id is never implied
        zoo.main(["export", str(tmp_path / "ck.pt"), "-o", str(tmp_path / "other.pt")])
    assert zoo.main(["export", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "m.pt"),
                     "--model-id", "m"]) == 1
    assert "error: no checkpoint" in capsys.readouterr().err
    assert zoo.main(["list"]) == 0
    assert zoo.DEFAULT_MODEL in capsys.readouterr().out


def test_weights_path_env_adds_folders(tmp_path, monkeypatch):
    """Models outside the package: ``$FASTCODEC_WEIGHTS_PATH`` folders are listed, loaded and
    used by the public API; the package's own files come first."""
    import fastcodec

    _tiny_checkpoint(tmp_path / "ck.pt")
    mine = tmp_path / "mine"
    zoo.export_checkpoint(tmp_path / "ck.pt", mine / "tiny-env.pt", "tiny-env")
    img = np.random.default_rng(2).integers(0, 256, (19, 23, 3), dtype=np.uint8)
    monkeypatch.delenv(zoo.WEIGHTS_PATH_ENV, raising=False)
    assert "tiny-env" not in zoo.available_models()
    with pytest.raises(ValueError, match=zoo.WEIGHTS_PATH_ENV):
        zoo.weights_path("tiny-env")

    monkeypatch.setenv(zoo.WEIGHTS_PATH_ENV, f"{tmp_path / 'missing'}{os.pathsep}{mine}")
    assert {"tiny-env", zoo.DEFAULT_MODEL} <= set(zoo.available_models())
    assert zoo.weights_path("tiny-env") == mine / "tiny-env.pt"
    # a same-named file on the path never shadows the shipped one
    (mine / f"{zoo.DEFAULT_MODEL}.pt").write_bytes(b"not weights")
    assert zoo.weights_path(zoo.DEFAULT_MODEL).parent == zoo._weights_dir()
    blob, = fastcodec.compress([img], quality=3, device="cpu", model="tiny-env")
    assert fastcodec.info(blob)["model_id"] == "tiny-env"
    back, = fastcodec.decompress([blob], device="cpu")
    assert back.shape == img.shape

    monkeypatch.delenv(zoo.WEIGHTS_PATH_ENV)
    with pytest.raises(fastcodec.FormatError, match=f"tiny-env.*{zoo.WEIGHTS_PATH_ENV}"):
        fastcodec.decompress([blob], device="cpu")



RETIRED = Path(__file__).resolve().parents[1] / "training" / "retired-weights"


@pytest.mark.skipif(not RETIRED.is_dir(), reason="needs the repository's training/ folder")
def test_retired_models_load_from_the_weights_path(monkeypatch):
    """fcf64-v1..v3 left the package; their files load once training/retired-weights is on the
    path, with the hashes their .fcc files record (as their Kodak evaluations stored them)."""
    import fastcodec

    results = Path(__file__).resolve().parents[1] / "benches" / "results"
    monkeypatch.setenv(zoo.WEIGHTS_PATH_ENV, str(RETIRED))
    for model_id in ("fcf64-v1", "fcf64-v2", "fcf64-v3"):
        assert not (zoo._weights_dir() / f"{model_id}.pt").exists()
        assert zoo.weights_path(model_id) == RETIRED / f"{model_id}.pt"
        evaluation, = results.glob(f"eval-kodak-{model_id}-*.json")
        recorded = json.loads(evaluation.read_text())["codecs"]["fastcodec"]["settings"]
        assert zoo.load_model(model_id).weights_hash.hex() == recorded["weights_hash"]
    img = np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    blob, = fastcodec.compress([img], quality=5, device="cpu", model="fcf64-v3")
    back, = fastcodec.decompress([blob], device="cpu")
    assert back.shape == img.shape
