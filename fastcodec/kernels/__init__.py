"""GPU kernels (Triton sources; the CUDA C++ ones live in csrc/cuda/), shipped inside the package.

The top-level ``kernels/`` folder of the repository is a link to this one.
Kernel launchers take already-validated arguments; the public API is :mod:`fastcodec.ops`.
"""
