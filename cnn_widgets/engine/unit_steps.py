"""What ``net.explain_unit`` returns: the arithmetic of one number of a layer, as plain arrays.

A unit's value is read back from the pass that computed it, down to the operation that combines many
numbers (a convolution, a pooling window, a linear layer, a sum or a concatenation: the *source*),
and then forward through the per-number steps the model applies to that result (a batch norm as its
scale and shift, an activation): ``value = steps[-1](... steps[0](source.total))``.

Every array is a float64 NumPy copy; nothing here refers to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Convolution:
    """One output number of a 2-D convolution: ``sum(products) + bias``.

    ``patch[i]`` is the input window read for input channel ``channels[i]`` (the channels of the
    unit's group; zeros where the window lies on the padding, marked by ``padding``), ``kernel[i]``
    the matching kernel slice, ``products = patch * kernel``, ``channel_sums`` one sum per input
    channel. ``input_map`` holds those input channels whole and ``output_map`` the unit's channel
    whole (for sliding the kernel over the map); ``window`` is ``(y0, x0)`` of the window's top-left
    on the input map (negative on the padding).
    """

    patch: np.ndarray  # [Cg, kh, kw]
    kernel: np.ndarray  # [Cg, kh, kw]
    products: np.ndarray  # [Cg, kh, kw]
    channel_sums: np.ndarray  # [Cg]
    channels: tuple[int, ...]
    padding: np.ndarray  # [kh, kw] bool: the window position lies outside the input map
    bias: float | None
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad: tuple[int, int]
    groups: int
    window: tuple[int, int]
    input_map: np.ndarray = field(repr=False)  # [Cg, H, W]
    output_map: np.ndarray = field(repr=False)  # [Ho, Wo]
    kind: str = "conv"
    input_from: str = ""  # the module that computed the input map; "input": the network's input itself

    @property
    def total(self) -> float:
        return float(self.channel_sums.sum()) + (self.bias or 0.0)

    @property
    def magnitude(self) -> float:
        return float(np.abs(self.products).sum()) + abs(self.bias or 0.0)


@dataclass(frozen=True)
class Pooling:
    """One output of a pooling window: its largest element (``op="max"``) or ``sum / divisor``.

    ``values`` is the window (``[kh, kw]``, or ``[n]`` for a mean over tokens), NaN where it lies on
    the padding; ``winner`` the index of the largest element (max only); ``divisor`` what the sum is
    divided by (average and mean; PyTorch's count, which may include the padding).
    """

    op: str  # "max" or "average"
    values: np.ndarray
    window: tuple[int, int]  # (y0, x0) of the window on the input map
    winner: tuple[int, ...] | None = None
    divisor: float | None = None
    input_map: np.ndarray | None = field(default=None, repr=False)  # [H, W]: the channel pooled
    output_map: np.ndarray | None = field(default=None, repr=False)
    kind: str = "pool"
    input_from: str = ""  # the module that computed the pooled map; "input": the network's input itself
    # how every window of the map lies on the input (for sliding it): kernel, stride, padding, dilation
    # of a max / average pool; ``adaptive`` windows are floor(i*H/out) .. ceil((i+1)*H/out); a
    # reduction (``x.mean((2, 3))``) has one window, the whole map
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    pad: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    adaptive: bool = False

    @property
    def total(self) -> float:
        if self.op == "max":
            return float(np.nanmax(self.values))
        return float(np.nansum(self.values)) / float(self.divisor)

    @property
    def magnitude(self) -> float:
        return float(np.nanmax(np.abs(self.values))) if self.op == "max" else abs(self.total)


@dataclass(frozen=True)
class Linear:
    """One output of a linear layer: ``sum(weights * inputs) + bias``, the largest products first.

    ``inputs`` are the input indices of the ``top`` products by size (``values``, ``weights``,
    ``products`` in the same order); ``rest`` is the sum of the other ``rest_count`` products.
    """

    inputs: np.ndarray  # [k] int
    values: np.ndarray
    weights: np.ndarray
    products: np.ndarray
    rest: float
    rest_count: int
    bias: float | None
    magnitude: float
    kind: str = "linear"

    @property
    def total(self) -> float:
        return float(self.products.sum()) + self.rest + (self.bias or 0.0)


@dataclass(frozen=True)
class Combination:
    """A number made of other layers' numbers at the same place: a sum (a residual addition), a
    difference, a product (a squeeze-and-excitation gate, a layer scale), a quotient, or a
    concatenation (one of the joined tensors' channels, ``channel`` of input ``part``)."""

    op: str  # "add", "subtract", "multiply", "divide" or "concat"
    operands: tuple[float, ...]
    sources: tuple[str, ...]  # where each operand was computed (a module name, "constant", "input")
    part: int | None = None  # concat: which input holds the unit
    channel: int | None = None  # concat: the unit's index in that input, along the joined axis
    parts: int | None = None
    kind: str = "combine"

    @property
    def total(self) -> float:
        a = self.operands
        if self.op == "add":
            return float(sum(a))
        if self.op == "subtract":
            return float(a[0] - sum(a[1:]))
        if self.op == "multiply":
            return float(np.prod(a))
        if self.op == "divide":
            return float(a[0] / a[1])
        return float(a[0])  # concat: the one operand that holds the unit

    @property
    def magnitude(self) -> float:
        return float(np.abs(np.prod(self.operands))) if self.op in ("multiply", "divide") else float(np.abs(self.operands).sum())


@dataclass(frozen=True)
class Step:
    """A per-number step after the source: ``"batch_norm"`` (``output = input * scale + shift``, the
    running statistics folded in) or an activation (``name`` as PyTorch calls it: relu, hardtanh
    (ReLU6), hardswish, silu, gelu, ...)."""

    name: str
    input: float
    output: float
    module: str
    scale: float | None = None
    shift: float | None = None
    params: tuple[float, ...] = ()  # the activation's numeric arguments as called (hardtanh: min, max)


@dataclass(frozen=True)
class Softmax:
    """Logits to probabilities for the top classes, step by step: ``exp(logit - largest)``, the sum of
    those over every class, and each divided by it (the shift by the largest logit changes nothing
    but keeps ``exp`` finite)."""

    classes: tuple[int, ...]
    labels: tuple[str, ...]
    logits: np.ndarray
    shift: float
    exps: np.ndarray
    exp_sum: float
    probabilities: np.ndarray


@dataclass(frozen=True)
class UnitArithmetic:
    """The arithmetic of one unit: ``source`` (what combines many numbers), then ``steps``.

    ``value`` is the unit's output as the model computed it (``net.activations`` at the position);
    ``total`` is the same number recomputed in float64 from the parts shown. ``then`` are the steps
    the model applies to this layer's output right after it (its batch norm and activation, when a
    convolution is followed by them), ending at ``after``; ``softmax`` is set for a unit of the
    logit layer. A bfloat16 / float16 model's ``value`` differs from ``total`` by its own rounding
    (about 2**-8 / 2**-11 of the terms).
    """

    unit: object  # cw.Unit, position filled in
    layer: str
    module: str  # the module whose operation is the source
    source: Convolution | Pooling | Linear | Combination
    steps: tuple[Step, ...]
    value: float
    total: float
    magnitude: float  # the size of the terms summed, carried through the steps (a scale for rounding)
    then: tuple[Step, ...] = ()
    softmax: Softmax | None = None
    dtype: str = "float32"  # what the model computes in: ``value`` is rounded to it, ``total`` is float64

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def after(self) -> float:
        return self.then[-1].output if self.then else self.value

    # the convolution's parts, named as the issue and the widget read them
    @property
    def products(self) -> np.ndarray:
        return self._conv().products

    @property
    def bias(self) -> float | None:
        return self._conv().bias

    @property
    def pre_activation(self) -> float:
        """The convolution's sum before any batch norm or activation."""
        return self._conv().total

    def _conv(self) -> Convolution:
        if not isinstance(self.source, Convolution):
            raise AttributeError(f"{self.layer}: the unit is computed by a {self.source.kind}, not a convolution")
        return self.source
