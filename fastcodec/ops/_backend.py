"""Choice of the implementation ("backend") behind the fused conv ops.

Backends:

* ``"triton"`` — the Triton kernels of :mod:`fastcodec.kernels` (CUDA tensors; CPU tensors only
  under the Triton interpreter, ``TRITON_INTERPRET=1``, which is meant for testing);
* ``"cuda"`` — the CUDA C++ kernels of :mod:`fastcodec.kernels.cuda_ops` (CUDA tensors, when the
  extension was built: ``cuda_ops.is_available()``);
* ``"torch"`` — the reference composition of PyTorch ops (any device, float64 included).

The ``backend=`` argument wins; else the ``FASTCODEC_BACKEND`` environment variable; else the
default: a CUDA tensor with Triton importable -> ``"triton"`` (or ``"cuda"`` once
:data:`CUDA_BACKEND_IS_DEFAULT` is switched on), otherwise ``"torch"``.

The choice is made in Python *before* the custom op is called and passed to it as a plain
string, so under ``torch.compile`` / ``torch.export`` it is a constant of the graph (the
environment is read when the graph is traced, not each time it runs).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Optional, Tuple

import torch

BACKENDS = ("triton", "cuda", "torch")
#: Environment variable naming the backend when the ``backend=`` argument is not given.
ENV_VAR = "FASTCODEC_BACKEND"

#: The CUDA C++ backend becomes the default for CUDA tensors (ahead of Triton) only once its GPU
#: tests have passed on a GPU. Switch this on then; until then it is used only when asked for.
CUDA_BACKEND_IS_DEFAULT = False

_triton_ok: Optional[bool] = None


def triton_available() -> bool:
    """Triton imports and the Triton kernel modules of this package are present (cached)."""
    global _triton_ok
    if _triton_ok is None:
        try:
            import triton  # noqa: F401

            ok = all(
                importlib.util.find_spec(f"fastcodec.kernels.{m}") is not None
                for m in ("conv_relu_pool", "conv_relu_upsample")
            )
        except Exception:  # a broken install is as good as none
            ok = False
        _triton_ok = ok
    return _triton_ok


def triton_interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def cuda_ops_available(device: Optional[torch.device] = None) -> bool:
    """The CUDA C++ backend's extension is importable and says it is usable on ``device`` (the
    tensors' CUDA device; None: the current one)."""
    try:
        from fastcodec.kernels import cuda_ops
    except ImportError:
        return False
    try:
        return bool(cuda_ops.is_available() if device is None else cuda_ops.is_available(device))
    except Exception:
        return False


def _cuda_device(device_type: str, device_index: Optional[int]) -> Optional[torch.device]:
    if device_type != "cuda" or device_index is None:
        return None
    return torch.device("cuda", device_index)


def _default_backend(device_type: str, device_index: Optional[int] = None) -> str:
    if device_type == "cuda":
        if CUDA_BACKEND_IS_DEFAULT and cuda_ops_available(_cuda_device(device_type, device_index)):
            return "cuda"
        if triton_available():
            return "triton"
    return "torch"


def _assume_constant_result(fn):
    """``torch.compiler.assume_constant_result`` without its import of ``torch._dynamo`` (about
    1 s, paid by every ``import fastcodec.models`` and CLI call): that decorator only sets this
    attribute, which Dynamo reads when it traces a call. tests/ops compile the ops with
    ``fullgraph=True``, which fails if a torch release stops honouring it."""
    fn._dynamo_marked_constant = True
    return fn


@_assume_constant_result
def _resolve(
    requested: Optional[str], device_type: str, op: str, device_index: Optional[int] = None
) -> Tuple[str, str, str]:
    """-> ``(backend, error kind, message)``; kind is "" (ok), "value" or "runtime".
    ``device_index``: the tensors' CUDA device, whose architecture the "cuda" backend must support.

    Errors are returned rather than raised: under ``torch.compile`` this function is evaluated
    once at trace time as a constant, and the caller raises (a plain ValueError/RuntimeError in
    eager mode, and after a graph break without ``fullgraph``)."""
    source = "backend"
    if requested is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            requested, source = env, f"the {ENV_VAR} environment variable"
    if requested is None:
        return _default_backend(device_type, device_index), "", ""
    if not isinstance(requested, str) or requested not in BACKENDS:
        return "", "value", (
            f"{op}: unknown backend {requested!r} (from {source}); expected one of {BACKENDS}"
        )
    not_importable = (
        f"{op}: backend 'triton' was requested (from {source}) but Triton or the fastcodec "
        "Triton kernels cannot be imported"
    )
    if requested == "triton":
        if device_type == "cuda":
            if not triton_available():
                return "", "runtime", not_importable
        elif device_type == "cpu":
            if not triton_interpreter_enabled():
                return "", "runtime", (
                    f"{op}: backend 'triton' (from {source}) on CPU tensors needs the Triton "
                    "interpreter (TRITON_INTERPRET=1, for testing only); move the tensors to a "
                    "CUDA device or use backend='torch'"
                )
            if not triton_available():
                return "", "runtime", not_importable
        elif device_type != "meta":
            return "", "runtime", (
                f"{op}: backend 'triton' (from {source}) needs CUDA tensors, got tensors on "
                f"{device_type!r}"
            )
    elif requested == "cuda" and device_type != "meta":
        if device_type != "cuda":
            return "", "runtime", (
                f"{op}: backend 'cuda' (from {source}) needs CUDA tensors, got tensors on "
                f"{device_type!r}"
            )
        if not cuda_ops_available(_cuda_device(device_type, device_index)):
            return "", "runtime", (
                f"{op}: backend 'cuda' was requested (from {source}) but the CUDA C++ extension "
                "is not available for this device (fastcodec.kernels.cuda_ops.is_available() is "
                "False: built without CUDA, or not for this GPU's architecture?)"
            )
    return requested, "", ""


def resolve_backend(requested: Optional[str], device: torch.device, op: str) -> str:
    """The backend to run ``op`` with for tensors on ``device``; raises ValueError for an
    unknown name and RuntimeError when the requested backend cannot run there."""
    if requested is not None and not isinstance(requested, str):
        raise TypeError(f"{op}: backend must be a str or None, got {type(requested).__name__}")
    backend, kind, message = _resolve(requested, device.type, op, device.index)
    if kind == "value":
        raise ValueError(message)
    if kind:
        raise RuntimeError(message)
    return backend


#: Kernel launcher of each (op, backend): module and function, imported on first use.
_LAUNCHERS = {
    ("conv_relu_pool", "triton"): ("fastcodec.kernels.conv_relu_pool", "conv_relu_pool_triton"),
    ("conv_relu_pool", "cuda"): ("fastcodec.kernels.cuda_ops", "conv_relu_pool_cuda"),
    ("conv_relu_upsample", "triton"): (
        "fastcodec.kernels.conv_relu_upsample",
        "conv_relu_upsample_triton",
    ),
    ("conv_relu_upsample", "cuda"): ("fastcodec.kernels.cuda_ops", "conv_relu_upsample_cuda"),
}


def launch_kernel(
    op: str,
    backend: str,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    memory_format: torch.memory_format,
    expected_shape: Tuple[int, ...],
    **geometry,
) -> torch.Tensor:
    """Runs ``op`` on a kernel backend ("triton" or "cuda") with inputs laid out as the launchers
    expect; checks the result's shape and dtype and returns it in ``memory_format``."""
    try:
        module, name = _LAUNCHERS[(op, backend)]
    except KeyError:
        raise ValueError(f"{op}: unknown backend {backend!r}") from None
    launch = getattr(importlib.import_module(module), name)
    out = launch(
        x.contiguous(memory_format=memory_format),
        weight.contiguous(),
        None if bias is None else bias.contiguous(),
        **geometry,
    )
    if tuple(out.shape) != tuple(expected_shape) or out.dtype != x.dtype:
        raise RuntimeError(
            f"{op}: the {backend!r} backend returned {tuple(out.shape)} {out.dtype}, expected "
            f"{tuple(expected_shape)} {x.dtype}"
        )
    # The fake implementation promises this layout; a launcher that missed it costs a copy.
    return out.contiguous(memory_format=memory_format)
