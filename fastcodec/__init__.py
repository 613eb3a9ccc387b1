"""fastcodec: a learned image codec with fused GPU kernels and a native range coder."""

__version__ = "0.1.0"
