"""Image parametrisations for feature visualisation: plain pixels, or a decorrelated Fourier basis.

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017: optimising pixels directly
gives high-frequency patterns that fool the network; describing the image by a Fourier spectrum
scaled by ``1/f`` (so every frequency starts with equal energy) and mixing colours through the
square root of the ImageNet colour correlation (so each parameter moves a decorrelated colour
direction) "preconditions" the ascent towards natural-looking images. A sigmoid keeps pixels in
``[0, 1]``. Both parametrisations can start from an image (the start ``x0`` of a gradient ascent).
"""

from __future__ import annotations

import torch

# square root of the ImageNet colour correlation matrix (Lucid's ``color_correlation_svd_sqrt``)
COLOR_CORRELATION_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)
_COLOR_MIX = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()
PARAMS = ("fourier", "pixel")
_EPS = 1e-4


def _logit(pixels: torch.Tensor) -> torch.Tensor:
    p = pixels.clamp(_EPS, 1 - _EPS)
    return torch.log(p) - torch.log1p(-p)


class ImageParam(torch.nn.Module):
    """``n`` RGB images of ``size x size`` pixels in ``[0, 1]`` as a function of free parameters.

    Parameters
    ----------
    n, size
        Batch and side length.
    param
        ``"fourier"`` (default of :func:`~cnn_widgets.engine.visualize.visualize`) or ``"pixel"``.
    decorrelate
        Mix colours through the ImageNet colour correlation before the sigmoid.
    start
        Optional pixels ``[n or 1, 3, size, size]`` in ``[0, 1]`` to start from (else small noise).
    generator
        Source of the initial noise (determinism for a seed).
    """

    def __init__(self, n: int, size: int, param: str = "fourier", decorrelate: bool = True,
                 start: torch.Tensor | None = None, generator: torch.Generator | None = None, sd: float = 0.01):
        super().__init__()
        self.param, self.decorrelate, self.size = param, decorrelate, size
        mix = _COLOR_MIX.float()
        self.register_buffer("mix", mix)
        if param == "fourier":
            fy = torch.fft.fftfreq(size)[:, None]
            fx = torch.fft.rfftfreq(size)[None, :]
            freqs = torch.sqrt(fx * fx + fy * fy)
            # 1/f: low frequencies carry the energy of natural images; every one starts equal
            self.register_buffer("scale", 1.0 / torch.maximum(freqs, torch.tensor(1.0 / size)))
            shape = (n, 3, size, size // 2 + 1, 2)
        else:
            shape = (n, 3, size, size)
        if start is None:
            values = torch.randn(shape, generator=generator) * sd
        else:
            values = self._from_pixels(start.detach().float().expand(n, -1, -1, -1))
        self.values = torch.nn.Parameter(values.contiguous())

    # raw (pre-sigmoid) colour space <-> parameters
    def _raw(self) -> torch.Tensor:
        if self.param == "fourier":
            spectrum = torch.view_as_complex(self.values) * self.scale
            raw = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        else:
            raw = self.values
        if self.decorrelate:
            raw = torch.einsum("ij,njhw->nihw", self.mix, raw)
        return raw

    def _from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        raw = _logit(pixels)
        if self.decorrelate:
            raw = torch.einsum("ij,njhw->nihw", torch.linalg.inv(self.mix), raw)
        if self.param == "fourier":
            spectrum = torch.fft.rfft2(raw, norm="ortho") / self.scale
            return torch.view_as_real(spectrum)
        return raw

    def forward(self) -> torch.Tensor:
        """Pixels ``[n, 3, size, size]`` in ``[0, 1]``."""
        return torch.sigmoid(self._raw())


def high_frequency_energy(pixels: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of the (mean-removed) power spectrum above ``cutoff`` cycles per pixel, averaged over channels."""
    x = pixels.float() - pixels.float().mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(x).abs() ** 2
    fy = torch.fft.fftfreq(x.shape[-2])[:, None]
    fx = torch.fft.rfftfreq(x.shape[-1])[None, :]
    high = torch.sqrt(fx * fx + fy * fy) > cutoff
    total = power.sum()
    return float(power[..., high].sum() / total) if total > 0 else 0.0

