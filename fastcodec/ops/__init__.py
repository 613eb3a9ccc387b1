"""Fused convolution ops (public API).

* :func:`conv_relu_pool` — ``pool(relu(conv2d(x)))`` (max or average pooling);
* :func:`conv_relu_upsample` — ``pixel_shuffle(relu(conv2d(x)))``.

Importing this package registers the custom ops ``torch.ops.fastcodec.conv_relu_pool`` and
``torch.ops.fastcodec.conv_relu_upsample`` (opaque to ``torch.compile``/``torch.export``, with
fake implementations and autograd). Backends: ``"triton"``, ``"cuda"`` (CUDA C++), ``"torch"``
(reference); see :mod:`fastcodec.ops._backend`.
"""

from ._backend import BACKENDS, CUDA_BACKEND_IS_DEFAULT, ENV_VAR, resolve_backend
from .conv_relu_pool import conv_relu_pool
from .conv_relu_upsample import conv_relu_upsample

__all__ = [
    "BACKENDS",
    "CUDA_BACKEND_IS_DEFAULT",
    "ENV_VAR",
    "conv_relu_pool",
    "conv_relu_upsample",
    "resolve_backend",
]
