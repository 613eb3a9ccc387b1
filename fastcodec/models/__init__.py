"""The learned codec's networks: transforms on the fused conv modules and the full model."""

from fastcodec.models.codec_model import DEFAULT_LAMBDAS, CodecModel, pad_to_multiple
from fastcodec.models.transforms import AnalysisTransform, SynthesisTransform

__all__ = [
    "AnalysisTransform",
    "CodecModel",
    "DEFAULT_LAMBDAS",
    "SynthesisTransform",
    "pad_to_multiple",
]
