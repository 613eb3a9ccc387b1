"""Entropy modelling: probability tables for the range coder (and, later, learned priors)."""

from fastcodec.entropy.cdf import pack_cdfs, pmf_to_quantized_cdf
from fastcodec.entropy.parametric import laplace_cdf_tables

__all__ = ["laplace_cdf_tables", "pack_cdfs", "pmf_to_quantized_cdf"]
