"""Shipped weights: export from a training checkpoint, load from the package, quality grid.

A weights file ``fastcodec/weights/<model_id>.pt`` is a plain dict readable with
``torch.load(weights_only=True)`` (tensors, ints, floats, strings, lists, dicts and None only)::

    format          "fastcodec-weights"
    format_version  2 (this fastcodec writes 2 and reads 1 and 2)
    model_id        str
    model_config    dict     CodecModel.from_config arguments
    state_dict      dict     name -> fp32 tensor (no optimizer state)
    tables          list     one dict per grid quality: quality (public, float),
                             quality_index (float), cdf_values int32 [sum(cdf_lengths)]
                             (the M rows back to back, no padding; version 1 stored them
                             padded as cdfs int32 [M, L]), cdf_lengths int32 [M],
                             offsets int32 [M], medians float32 [M], precision int
    metadata        dict     source, step, lambdas, exported (ISO date), format_version, ...;
                             lineage + total_steps when the run started from a reshaped model

Public quality ``q`` is a float on a grid of 0.25 from 1 to ``K`` (K = 6 trained qualities: 21
levels); the model's quality index is ``q - 1``. The integer tables of every grid quality are
computed once, at export, and installed at load with ``CodecModel.load_tables_state``: coding
never re-evaluates the density network, so a stream decodes identically on every machine.

Weights are looked up in the package's ``weights/`` folder first, then in the folders listed in
``$FASTCODEC_WEIGHTS_PATH`` (separated by ``os.pathsep``): put your own exported models, or
retired ones that old files need, there instead of into the installed package.

``weights_hash`` is the first 8 bytes of the SHA-256 of the file bytes; the ``.fcc`` container
records it so a stream is only ever decoded with the exact weights that made it.

Command line: ``python -m fastcodec.zoo export CKPT --model-id ID [-o OUT] [--force]`` and
``python -m fastcodec.zoo list``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import io
import math
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

__all__ = [
    "DEFAULT_MODEL",
    "WEIGHTS_PATH_ENV",
    "FORMAT_VERSION",
    "MAX_QUALITY",
    "MIN_QUALITY",
    "QUALITY_STEP",
    "ShippedModel",
    "available_models",
    "export_checkpoint",
    "grid_qualities",
    "load_file",
    "load_model",
    "snap_quality",
    "weights_path",
]

DEFAULT_MODEL = "fcf64-v5"
WEIGHTS_PATH_ENV = "FASTCODEC_WEIGHTS_PATH"
FORMAT = "fastcodec-weights"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # 1: the tables' rows padded to one width (7x the bytes)
MIN_QUALITY = 1.0
MAX_QUALITY = 6.0
QUALITY_STEP = 0.25
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


# ---------------------------------------------------------------------------------------------
# quality grid
# ---------------------------------------------------------------------------------------------


def snap_quality(quality) -> float:
    """``quality`` rounded to the nearest point of the 0.25 grid in [1, 6] (ties go up).

    Raises TypeError for non-numbers (bools included) and ValueError outside [1, 6] or for
    NaN/inf."""
    if isinstance(quality, bool) or not isinstance(quality, (int, float, np.integer, np.floating)):
        raise TypeError(f"quality must be a number in [1, 6], got {quality!r}")
    q = float(quality)
    if not math.isfinite(q) or q < MIN_QUALITY or q > MAX_QUALITY:
        raise ValueError(f"quality must be a finite number in [1, 6], got {quality!r}")
    return math.floor(q / QUALITY_STEP + 0.5) * QUALITY_STEP


def grid_qualities(num_trained: int = 6) -> Tuple[float, ...]:
    """Public grid qualities of a model trained for ``num_trained`` trade-offs: 1, 1.25, ..,
    ``num_trained``."""
    steps = int(round((num_trained - 1) / QUALITY_STEP))
    return tuple(MIN_QUALITY + i * QUALITY_STEP for i in range(steps + 1))


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def _check_model_id(model_id) -> str:
    if not isinstance(model_id, str) or not _MODEL_ID.match(model_id):
        raise ValueError(
            f"model id must be 1..32 ASCII letters, digits, '.', '_' or '-' (not starting with "
            f"a punctuation mark), got {model_id!r}"
        )
    return model_id


def _weights_dir() -> Path:
    return Path(str(resources.files("fastcodec") / "weights"))


def _weights_dirs() -> List[Path]:
    """The package's weights folder, then those of ``$FASTCODEC_WEIGHTS_PATH`` in order."""
    extra = os.environ.get(WEIGHTS_PATH_ENV, "").split(os.pathsep)
    return [_weights_dir()] + [Path(d).expanduser() for d in extra if d]


def _find_weights(model_id: str) -> Optional[Path]:
    for folder in _weights_dirs():
        path = folder / f"{model_id}.pt"
        if path.is_file():
            return path
    return None


def available_models() -> List[str]:
    """Model ids with a weights file in the package or on ``$FASTCODEC_WEIGHTS_PATH``, sorted."""
    found = set()
    for folder in _weights_dirs():
        if folder.is_dir():
            found.update(p.name[:-3] for p in folder.iterdir()
                         if p.name.endswith(".pt") and _MODEL_ID.match(p.name[:-3]))
    return sorted(found)


def weights_path(model_id: str = DEFAULT_MODEL) -> Path:
    """Path of the weights file for ``model_id``: the package's, else the first one on
    ``$FASTCODEC_WEIGHTS_PATH`` (ValueError when there is none)."""
    _check_model_id(model_id)
    path = _find_weights(model_id)
    if path is None:
        where = "" if os.environ.get(WEIGHTS_PATH_ENV) else (
            f"; set {WEIGHTS_PATH_ENV} to a folder holding {model_id}.pt to use other weights")
        raise ValueError(f"unknown model {model_id!r}: installed models are "
                         f"{available_models() or 'none'}{where}")
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # a reader never sees a half-written file
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------


def export_checkpoint(checkpoint_path, out_path=None, model_id: str = DEFAULT_MODEL,
                      overwrite: bool = False) -> Path:
    """Writes the shipped weights of a *training* checkpoint (our own format, see
    :mod:`fastcodec.train`) to ``out_path`` (default: the package's ``weights/<model_id>.pt``),
    atomically. Keeps the model config and weights (fp32, no optimizer state; the moving average
    of the weights when the checkpoint has one), refits the prior's quantiles exactly
    (:meth:`~fastcodec.entropy.FactorizedPrior.fit_quantiles`) and adds the integer tables of
    every grid quality. Returns the path written.

    An existing file is replaced only with ``overwrite=True``: files coded with a model record
    the hash of its weights, so replacing shipped weights makes every such file undecodable
    (new weights get a new model id)."""
    _check_model_id(model_id)
    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint_path}")
    out = Path(out_path) if out_path is not None else _weights_dir() / f"{model_id}.pt"
    if out.name != f"{model_id}.pt":
        raise ValueError(f"the file must be named {model_id}.pt (models are found by file name: "
                         f"{WEIGHTS_PATH_ENV}), got {out.name}")
    existing = _find_weights(model_id)
    if existing is not None and existing.resolve() != out.resolve():
        raise FileExistsError(f"model {model_id!r} is already installed at {existing}, which "
                              f"would be the one loaded; export under a new model id")
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"{out} exists: files coded with those weights would no longer decode; export "
            f"under a new model id (or another -o), or overwrite it on purpose (--force)")

    import torch

    from fastcodec import __version__
    from fastcodec.models import CodecModel

    # weights_only=False: only ever for our own training checkpoints (they hold RNG states
    # and argparse values); shipped files are read with weights_only=True.
    try:
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    except OSError:
        raise
    except Exception as exc:
        raise ValueError(f"{checkpoint_path} is not a readable checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise ValueError(f"{checkpoint_path} is not a fastcodec training checkpoint "
                         "(needs 'model' and 'model_config')")
    model = CodecModel.from_config(ckpt["model_config"])
    use_ema = bool(ckpt.get("ema"))  # the weight average, when training kept one
    model.load_state_dict(ckpt["ema"] if use_ema else ckpt["model"])
    model.eval()
    # the quantiles (medians, table supports) solved exactly for the final density rather than
    # taken as the auxiliary loss left them
    aux_before = float(model.entropy.aux_loss().detach())
    aux_after = model.entropy.fit_quantiles()

    qualities = grid_qualities(model.num_qualities)
    state = model.tables_state([q - MIN_QUALITY for q in qualities])
    tables = []
    for q in qualities:
        t = state[model._key(q - MIN_QUALITY)]
        tables.append({
            "quality": float(q),
            "quality_index": float(q - MIN_QUALITY),
            "cdf_values": torch.from_numpy(_ragged(t["cdfs"], t["cdf_lengths"])),
            "cdf_lengths": torch.from_numpy(np.ascontiguousarray(t["cdf_lengths"], np.int32)),
            "offsets": torch.from_numpy(np.ascontiguousarray(t["offsets"], np.int32)),
            "medians": torch.from_numpy(np.ascontiguousarray(t["medians"], np.float32)),
            "precision": int(t["precision"]),
        })
    state_dict = {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype)
                  .contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {
        "source": checkpoint_path.name,
        "source_dir": checkpoint_path.parent.name,
        "step": int(ckpt.get("step", -1)),
        "lambdas": [float(v) for v in model.lambdas.tolist()],
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "format_version": FORMAT_VERSION,
        "fastcodec_version": __version__,
        "torch_version": str(torch.__version__),
        "num_params": int(sum(p.numel() for p in model.parameters())),
        "weights": f"ema({float(ckpt.get('ema_decay', 0)):g})" if use_ema else "raw",
        "quantile_refit": {"aux_before": aux_before, "aux_after": aux_after},
    }
    lineage = [dict(e) for e in ckpt.get("lineage", [])]  # earlier runs (fastcodec.models.slim)
    if lineage:
        metadata["lineage"] = lineage
        metadata["total_steps"] = metadata["step"] + sum(int(e.get("steps", 0)) for e in lineage)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "model_config": dict(model.config),
        "state_dict": state_dict,
        "tables": tables,
        "metadata": metadata,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    # the file must load the way users load it: fail here rather than ship an unreadable one
    torch.load(io.BytesIO(buf.getvalue()), map_location="cpu", weights_only=True)
    _atomic_write(out, buf.getvalue())
    return out


# ---------------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------------


@dataclass
class ShippedModel:
    """A loaded weights file.

    ``model``: CodecModel in eval mode on ``device`` with the stored tables installed;
    ``weights_hash``: 8 bytes; ``qualities``: the public grid qualities with stored tables;
    ``tables``: public quality -> the installed ``EntropyTables`` (the very objects the model
    codes with); ``metadata``: the file's metadata dict."""

    model: object
    model_id: str
    weights_hash: bytes
    qualities: Tuple[float, ...]
    metadata: dict
    device: object
    tables: Dict[float, object] = field(repr=False)
    _coders: Dict[float, object] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check_quality(self, quality: float) -> float:
        """``quality`` if tables for it are stored, else ValueError."""
        q = float(quality)
        if q not in self.tables:
            raise ValueError(f"model {self.model_id} has no tables for quality {q:g} "
                             f"(stored: {self.qualities[0]:g}..{self.qualities[-1]:g} "
                             f"in steps of {QUALITY_STEP:g})")
        return q

    def coder(self, quality: float):
        """The range coder (``CdfTables``) of the stored tables of ``quality`` (built once)."""
        q = self.check_quality(quality)
        with self._lock:
            c = self._coders.get(q)
            if c is None:
                c = self._coders[q] = self.tables[q].coder()
        return c


def _ragged(cdfs, lengths) -> np.ndarray:
    """The valid entries of padded CDF rows ``cdfs [M, L]``, back to back (int32)."""
    cdfs, lengths = np.asarray(cdfs), np.asarray(lengths)
    return np.ascontiguousarray(
        np.concatenate([cdfs[i, :n] for i, n in enumerate(lengths)] or [np.zeros(0)]), np.int32)


def _padded(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_ragged`: rows padded with their last entry, as the coder takes them."""
    from fastcodec.entropy.cdf import pack_cdfs

    if lengths.ndim != 1 or lengths.size == 0 or values.ndim != 1 or np.any(lengths < 1) \
            or int(lengths.sum()) != values.size:
        raise ValueError("weights file: cdf_values does not split into rows of cdf_lengths")
    return pack_cdfs(np.split(values, np.cumsum(lengths)[:-1]))[0]


def _as_array(value, dtype, name: str) -> np.ndarray:
    import torch

    if not isinstance(value, torch.Tensor):
        raise ValueError(f"weights file: table entry {name} is not a tensor")
    return np.ascontiguousarray(value.cpu().numpy(), dtype=dtype)


def _table_state(t: dict, version: int) -> dict:
    """One stored table set as :meth:`CodecModel.load_tables_state` takes it."""
    lengths = _as_array(t["cdf_lengths"], np.int32, "cdf_lengths")
    if version == 1:
        cdfs = _as_array(t["cdfs"], np.int32, "cdfs")
    else:
        cdfs = _padded(_as_array(t["cdf_values"], np.int32, "cdf_values"), lengths)
    return {
        "cdfs": cdfs,
        "cdf_lengths": lengths,
        "offsets": _as_array(t["offsets"], np.int32, "offsets"),
        "medians": _as_array(t["medians"], np.float32, "medians"),
        "precision": int(t["precision"]),
    }


def load_file(path, device="cpu", model_id: Optional[str] = None) -> ShippedModel:
    """Loads a weights file (any path; not cached). ``model_id`` defaults to the file's own."""
    import torch

    from fastcodec.models import CodecModel

    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).digest()[:8]
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable weights file: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastcodec weights file")
    version = obj.get("format_version")
    if type(version) is not int or version not in _READABLE_VERSIONS:
        raise ValueError(f"{path}: weights format version {version!r} is not supported (this "
                         f"fastcodec reads versions {', '.join(map(str, _READABLE_VERSIONS))})")
    file_id = obj["model_id"]
    if model_id is not None and model_id != file_id:
        raise ValueError(f"{path} holds model {file_id!r}, expected {model_id!r}")
    dev = _torch_device(device)
    model = CodecModel.from_config(obj["model_config"])
    model.load_state_dict(obj["state_dict"])
    model.to(dev).eval()  # eval before installing: train() clears the table cache

    state, by_quality = {}, {}
    for t in obj["tables"]:
        try:
            state[float(t["quality_index"])] = _table_state(t, version)
            by_quality[float(t["quality"])] = float(t["quality_index"])
        except KeyError as exc:
            raise ValueError(f"{path}: a table lacks its {exc} entry") from None
    model.load_tables_state(state)
    tables = {q: model._tables[model._key(qi)] for q, qi in by_quality.items()}
    return ShippedModel(
        model=model,
        model_id=file_id,
        weights_hash=digest,
        qualities=tuple(sorted(tables)),
        metadata=dict(obj.get("metadata", {})),
        device=dev,
        tables=tables,
    )


def _torch_device(device):
    """``torch.device(device)``; ValueError for a malformed one and for CUDA where this torch
    has none (rather than torch's assertion deep inside ``.to()``)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"not a torch device: {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = ("this PyTorch build has no CUDA" if torch.version.cuda is None
               else "no CUDA device is visible")
        raise ValueError(f"device {str(dev)!r} is not available: {why} (torch "
                         f"{torch.__version__}); run on the CPU instead")
    return dev


_cache: Dict[Tuple[str, str, str], ShippedModel] = {}
_cache_lock = threading.Lock()


def _device_key(device) -> str:
    import torch

    dev = _torch_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return str(dev)


def load_model(model_id: str = DEFAULT_MODEL, device="cpu") -> ShippedModel:
    """The model ``model_id`` (:func:`weights_path` finds its file) on ``device``, loaded once
    per (model_id, device, file) and cached. ValueError when no such model is installed."""
    path = weights_path(model_id)
    key = (model_id, _device_key(device), str(path))
    with _cache_lock:
        shipped = _cache.get(key)
        if shipped is None:
            shipped = _cache[key] = load_file(path, key[1], model_id=model_id)
    return shipped


def clear_cache() -> None:
    """Forgets the loaded models (the next ``load_model`` reads the files again)."""
    with _cache_lock:
        _cache.clear()


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastcodec.zoo", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="export a training checkpoint as shipped weights")
    e.add_argument("checkpoint", help="training checkpoint (e.g. training/codec-v1/latest.pt)")
    e.add_argument("-o", "--out", default=None,
                   help="output file (default: the package's weights/<model-id>.pt; to use a file "
                        "elsewhere, put its folder on $FASTCODEC_WEIGHTS_PATH)")
    e.add_argument("--model-id", required=True,
                   help="id of the new weights (a new one for new weights: files record the id "
                        "and the weights' hash, e.g. fcf96-v7)")
    e.add_argument("--force", action="store_true",
                   help="replace an existing weights file (files coded with it stop decoding)")
    sub.add_parser("list", help="list the installed models")
    args = p.parse_args(argv)
    if args.cmd == "export":
        try:
            out = export_checkpoint(args.checkpoint, args.out, args.model_id,
                                    overwrite=args.force)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        shipped = load_file(out)
        md = shipped.metadata
        print(f"{out}: model {shipped.model_id}, {out.stat().st_size / 1e6:.2f} MB, "
              f"step {md.get('step')} of {md.get('source_dir')}/{md.get('source')}, "
              f"{len(shipped.qualities)} qualities, hash {shipped.weights_hash.hex()}")
        return 0
    for model_id in available_models():
        path = weights_path(model_id)
        print(f"{model_id}\t{path.stat().st_size / 1e6:.2f} MB\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
