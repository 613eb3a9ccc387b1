"""Fused conv modules and the model fuser.

* :class:`ConvReLUPool2d` — Conv2d -> ReLU -> MaxPool2d/AvgPool2d in one op;
* :class:`ConvReLUUpsample2d` — Conv2d -> ReLU -> PixelShuffle in one op;
* :func:`fuse` — rewrites a model's fusable chains into those modules.
"""

from .fuse import fuse
from .modules import ConvReLUPool2d, ConvReLUUpsample2d

__all__ = ["ConvReLUPool2d", "ConvReLUUpsample2d", "fuse"]
