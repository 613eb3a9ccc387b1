"""fastcodec: a learned image codec with fused GPU kernels and a native range coder.

``fastcodec.compress``, ``decompress``, ``info``, ``Codec`` (:mod:`fastcodec.api`) and
``FormatError`` (:mod:`fastcodec.container`) are imported on first use, so ``import fastcodec``
stays cheap (it does not import torch).
"""

__version__ = "0.1.0"

_LAZY = {
    "Codec": "fastcodec.api",
    "compress": "fastcodec.api",
    "decompress": "fastcodec.api",
    "info": "fastcodec.api",
    "FormatError": "fastcodec.container",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastcodec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
