"""Low-precision models (bfloat16, float16): passes run in the model's dtype, sums and results in float32.

A model converted with ``model.to(torch.bfloat16)`` runs every forward and backward pass in its
own dtype (its parameters decide it). What the engine adds up over many terms (SmoothGrad's
samples, integrated gradients' weighted steps) is accumulated in float32, and the maps it hands
back (saliency, occlusion) are float32: 8 bits of mantissa would round a sum of many small
terms, and numpy has no bfloat16. A float32 or float64 model keeps its dtype throughout.
"""

from __future__ import annotations

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for a low-precision dtype, else ``dtype`` itself."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def as_result(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 when it is bfloat16 / float16 (a map handed back), else unchanged."""
    return tensor.float() if tensor.dtype in LOW_PRECISION else tensor
