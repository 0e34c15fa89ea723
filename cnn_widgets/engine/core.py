"""``NetworkBase``: any torch CNN plus its preprocessing and class names, explorable by layer and unit.

Everything that is not an explanation method lives here: the model, input preparation, layer
discovery, forward passes inside a session, activations, predictions, filters and target
resolution. The methods (saliency, occlusion, contributions, scan) take a ``NetworkBase``; the
facade :class:`~cnn_widgets.engine.network.Network` adds them as methods. Imports run one way:
core <- methods <- network.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn

from .checks import check_int
from .errors import CnnWidgetsError, ImageError, LayerNotFoundError, ModelError, NonFiniteError, TargetError, closest_names
from .hooks import StopForward, capture_outputs, inference_state
from .images import ImageLike, model_input
from .layers import LayerInfo
from .preprocess import display_pixels, imagenet_preprocess
from .lrp_mode import session_rules
from .structure import (OutputSelector, Structure, check_input_size, check_labels, check_model, check_preprocess,
                        class_names, does_not_fit, learn_structure, modules_key, select_logits, state_key)
from .targets import ClassTarget, Target, Unit, check_unit

@dataclass(frozen=True)
class Prediction:
    """One of the top-k classes."""

    label: str
    probability: float
    index: int
    logit: float


class NetworkBase:
    """A torch CNN with its preprocessing and labels, explorable layer by layer (no explanation methods).

    Parameters
    ----------
    model
        Any ``torch.nn.Module`` that maps ``[N, 3, H, W]`` images to ``[N, classes]`` scores
        (torchvision, timm, a user's own module; ``torch.compile(model)``: its ``_orig_mod`` explored, the compiled
        graph never run; TorchScript refused). Its parameters decide the device and dtype (bfloat16 too) of every pass.
    preprocess
        Callable from an RGB ``PIL.Image`` to a float tensor ``[3, H, W]``. Default: ImageNet
        resize 256 / centre-crop 224 / normalise.
    labels
        Class names, one per output. Default: ``"class 0"``, ``"class 1"``, ...
    input_size
        ``(H, W)`` (or one int) of the image the layers are first learned from, for a
        ``preprocess`` that does not resize (e.g. ``T.ToTensor()`` on a 32x32 model). Default: the
        size of the first image given, else a 256x256 image through ``preprocess``.
    output
        Where the class scores are in the model's output: ``None`` (a tensor; the first tensor of
        a tuple; a dict's ``"logits"``; an object's ``.logits``), a key or index, or a callable.

    Layer shapes are learned from real inputs, once per input shape: ``net.layers`` describes the
    last image prepared (one shape for all when ``preprocess`` resizes, as the default does).
    Images may be PIL images, paths, ``HxW[x3|x4]`` arrays, or preprocessed tensors ``[C, H, W]``.
    Every method leaves the model as it found it: no hook stays registered (also after an
    exception), ``training`` and ``requires_grad`` flags are restored, weights are never written.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor] | None = None,
        labels: Sequence[str] | None = None,
        name: str | None = None,
        input_size: int | tuple[int, int] | None = None,
        output: OutputSelector = None,
    ):
        self.model = check_model(model)
        self.preprocess = imagenet_preprocess() if preprocess is None else check_preprocess(preprocess)
        self.labels = labels  # checked by the setter; their count is checked against the classes when used
        self.name = name or type(self.model).__name__
        self.output = output
        self._first_size = check_input_size(input_size)
        self._shape: tuple[int, ...] | None = None  # input shape [C, H, W] that net.layers describes
        self._natural: tuple[int, ...] | None = None  # the first shape learned: what input_size reports
        self._structures: dict[tuple, Structure] = {}
        self.last_rule: tuple[str, tuple[str, ...]] = ("gradient", ())  # set by each session
        self._activation_cache: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self.cache_size = 4

    # ------------------------------------------------------------------ basics
    def __repr__(self) -> str:
        return f"Network({self.name}, {len(self.layers)} layers, {self.num_classes} classes)"

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for p in self.model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def prepare(self, image: ImageLike) -> torch.Tensor:
        """The model input ``[1, 3, H, W]`` for ``image`` (preprocessed, on the model's device)."""
        x = model_input(image, self.preprocess).unsqueeze(0)
        if not torch.isfinite(x).all():
            raise ImageError("the image tensor contains NaN or infinite values; clean it before passing it in")
        x = x.to(device=self.device, dtype=self.dtype)
        self._structure(x)  # learn the layers at this input shape (or say the image does not fit)
        self._shape = tuple(x.shape[1:])
        return x

    def display_image(self, image: ImageLike) -> np.ndarray:
        """What the model sees, as an ``HxWx3`` uint8 array (preprocessing without normalisation)."""
        return display_pixels(image, self.preprocess, self.prepare(image))

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model's natural input: the first shape learned (``input_size=``, the
        preprocess's output, or the first image), unchanged by later inputs of other sizes."""
        self._structure()
        return tuple(self._natural[-2:])

    @property
    def input_channels(self) -> int:
        """Channels of the model input (3 for RGB models, 1 for grayscale ones)."""
        self._structure()
        return self._natural[0]

    def _example(self) -> torch.Tensor:
        h, w = self._first_size or (256, 256)
        blank = Image.new("RGB", (w, h), (128, 128, 128))
        return model_input(blank, self.preprocess).unsqueeze(0).to(device=self.device, dtype=self.dtype)

    def _structure(self, x: torch.Tensor | None = None) -> Structure:
        """Layers, class count and logit layer at the shape of ``x`` (default: the current shape)."""
        if x is None and self._shape is None:
            x = self._example()
        shape = tuple(x.shape[1:]) if x is not None else self._shape
        key = (modules_key(self.model), shape)
        found = self._structures.get(key)
        if found is not None:
            return found
        if x is None:  # the modules changed since this shape was learned: relearn on a blank input of it
            x = torch.zeros((1, *shape), device=self.device, dtype=self.dtype)
        try:
            found = learn_structure(self.model, x, self.output, self.name)
        except CnnWidgetsError:
            raise
        except Exception as err:  # the model cannot run on this input: say so, and how to fix it
            raise does_not_fit(self.name, shape, err, self._shapes_that_run(shape)) from err
        self._structures = {k: v for k, v in self._structures.items() if k[0] == key[0]}  # drop a replaced model's
        self._structures[key] = found
        if self._shape is None:
            self._shape = shape
        if self._natural is None:
            self._natural = shape
        return found

    def _shapes_that_run(self, failed: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Input shapes the model is known to run on (trying ``input_size`` if none is known yet)."""
        known = [k[1] for k in self._structures]
        if not known and self._first_size is not None:
            example = self._example()
            if tuple(example.shape[1:]) != failed:
                try:
                    self._structure(example)
                    known = [tuple(example.shape[1:])]
                except CnnWidgetsError:
                    pass
        return known

    # ------------------------------------------------------------------ layers
    @property
    def layers(self) -> list[LayerInfo]:
        """Explorable layers in forward order (name, kind, shape, receptive field)."""
        return self._structure().layers

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def layer(self, name: str | LayerInfo) -> LayerInfo:
        """The :class:`LayerInfo` called ``name`` (errors suggest the closest names)."""
        if isinstance(name, LayerInfo):
            name = name.name
        for layer in self.layers:
            if layer.name == name:
                return layer
        hint = closest_names(str(name), self.layer_names)
        raise LayerNotFoundError(
            f"{self.name} has no explorable layer {name!r}"
            + (f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else "")
            + " (net.layers lists them all)"
        )

    def layer_below(self, name: str) -> str | None:
        """Default layer a unit of ``name`` is explained in: the input of the nearest channel-mixing layer.

        For a unit after ``conv5 -> relu5`` this is ``relu4`` (the input of ``conv5``); channelwise
        layers (activations, pooling, depthwise convolutions) are stepped over.
        """
        info = self.layer(name)
        while not info.mixes_channels:
            if info.input_layer is None:
                return None
            info = self.layer(info.input_layer)
        below = info.input_layer
        # Residual blocks that keep the shape add their input to their output, so channel j of the
        # block below feeds channel j straight through and would top every ranking. Step over such
        # runs of joins (blocks, or a residual add read through its activation, as in timm) to the
        # input of the stage: the tree then walks stage by stage. A transformer block's children are
        # the embedding channels of the block below.
        while below is not None and info.is_join and info.layout is None:
            lower = self.layer(below)
            if not lower.is_join or lower.shape != info.shape or lower.input_layer is None:
                break
            below = self.layer_below(below)
        return below

    # ------------------------------------------------------------------ classes
    @property
    def num_classes(self) -> int:
        found = self._structure()
        if found.num_classes is None:
            raise ModelError(found.scores_error)
        return found.num_classes

    @property
    def logit_layer(self) -> str | None:
        """The last explorable layer whose output is the class scores (``None`` if no layer is)."""
        return self._structure().logit_layer

    @property
    def labels(self) -> list[str]:
        """One name per class (``"class 0"``, ... when none were given); settable."""
        return class_names(self._labels, self.num_classes, self.name)

    @labels.setter
    def labels(self, labels: Sequence[str] | None) -> None:
        self._labels = check_labels(labels)

    def label(self, index: int) -> str:
        return self.labels[index]

    def class_index(self, label: str) -> int:
        """Index of a class by its label (exact, or one of its comma-separated synonyms, any case)."""
        wanted = label.strip().lower()
        for i, name in enumerate(self.labels):
            if name.lower() == wanted or wanted in [s.strip().lower() for s in name.split(",")]:
                return i
        hint = closest_names(label, self.labels)
        raise TargetError(
            f"no class is labelled {label!r}" + (f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else "")
            + " (net.labels lists them; a class index works too)"
        )

    # ------------------------------------------------------------------ forward passes
    @contextmanager
    def _session(self, rule: str = "gradient") -> Iterator:
        """Eval mode, frozen parameters and backward rules (rectifier rules, or ``"lrp:<composite>"``)
        for the duration of one computation.

        Afterwards :attr:`last_rule` says which rule ran and on which nonlinearities (empty when
        the model has none the rule applies to: then any rule is the plain gradient).
        """
        with inference_state(self.model), session_rules(rule, self) as state:
            try:
                yield state
            finally:
                self.last_rule = (rule, tuple(sorted(state.applied)))

    def _forward(
        self,
        x: torch.Tensor,
        layers: Iterable[str] = (),
        stop_early: bool = False,
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Run the model on ``x`` capturing ``layers``; call inside :meth:`_session`.

        With ``stop_early`` the pass stops once every requested layer has produced its output
        (the logits are then ``None``).
        """
        names = list(dict.fromkeys(layers))
        modules, layouts = {n: self.layer(n)._module for n in names}, {n: self.layer(n).capture for n in names}
        logits = None
        with capture_outputs(modules, stop_after=stop_early and bool(names), layouts=layouts) as outputs:
            try:
                out = self.model(x)
                # a model with no class scores (a backbone) still gives layer outputs
                logits = select_logits(out, self.output, self.name) if self._structure().num_classes else None
            except StopForward:
                pass
        checked = [logits] if logits is not None else list(outputs.values())
        if not all(bool(torch.isfinite(t).all()) for t in checked):
            raise NonFiniteError(
                f"{self.name} produced NaN or infinite values for this image; check the weights and "
                "that the preprocessing matches the model"
            )
        return logits, dict(outputs)

    def _cache_key(self, x: torch.Tensor) -> tuple:
        digest = hashlib.blake2b(x.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy(), digest_size=16).hexdigest()
        return (digest, tuple(x.shape), str(x.dtype), str(x.device), state_key(self))

    def _all_activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        key = self._cache_key(x)
        cached = self._activation_cache.get(key)
        if cached is not None:
            self._activation_cache.move_to_end(key)
            return cached
        with self._session(), torch.no_grad():
            logits, outputs = self._forward(x, self.layer_names)
        result = {name: outputs[name][0].detach() for name in self.layer_names if name in outputs}
        result["__logits__"] = logits[0].detach() if logits is not None else None
        self._activation_cache[key] = result
        while len(self._activation_cache) > self.cache_size:
            self._activation_cache.popitem(last=False)
        return result

    def logits(self, image: ImageLike) -> torch.Tensor:
        """Raw class scores ``[classes]``."""
        scores = self._all_activations(self.prepare(image))["__logits__"]
        if scores is None:
            self.num_classes  # raises the ModelError that says why there are no class scores
        return scores.clone()

    def predict(self, image: ImageLike, k: int = 5) -> list[Prediction]:
        """Top-``k`` classes, best first, with softmax probabilities."""
        k = check_int("k", k)
        logits = self.logits(image)
        probs = logits.float().softmax(dim=0)
        values, indices = probs.topk(min(k, probs.numel()))
        return [
            Prediction(self.label(int(i)), float(v), int(i), float(logits[int(i)]))
            for v, i in zip(values, indices)
        ]

    def activations(self, image: ImageLike, layers: str | Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Layer outputs ``{name: [C, H, W] or [C]}`` from one forward pass (cached per image)."""
        if isinstance(layers, (str, LayerInfo)) or not (layers is None or isinstance(layers, Iterable)):
            layers = [layers]  # one name (a wrong type is then refused by self.layer, naming the layers)
        names = self.layer_names if layers is None else [self.layer(n).name for n in layers]
        x = self.prepare(image)
        every = self._all_activations(x)
        return {n: every[n].clone() for n in names}

    def filters(self, layer: str) -> torch.Tensor:
        """Weights of a conv or linear layer (a detached copy): ``[out, in, kh, kw]`` or ``[out, in]``."""
        info = self.layer(layer)
        weight = getattr(info._module, "weight", None)
        if info.kind not in ("conv", "linear") or not isinstance(weight, torch.Tensor):
            with_weights = [layer.name for layer in self.layers if layer.kind in ("conv", "linear")]
            raise LayerNotFoundError(
                f"layer {info.name!r} is a {info.kind} layer and has no filters; pick a conv or linear layer, "
                f"e.g. {', '.join(repr(n) for n in with_weights[:3])}"
            )
        return weight.detach().clone()

    # ------------------------------------------------------------------ targets
    def _resolve_target(self, target: Target) -> Unit | ClassTarget:
        """Check a user's target against the network; return a :class:`Unit` or :class:`ClassTarget`.

        Errors name the fix (channel and position ranges, the class count, close labels).
        """
        if isinstance(target, Unit):
            return check_unit(target, self.layer(target.layer))
        if target is None:
            raise TargetError("no target given; pass a class index, a class label or cw.Unit(layer, channel)")
        if isinstance(target, str):
            index = self.class_index(target)
            return ClassTarget(index, self.label(index))
        if isinstance(target, bool):
            raise TargetError(f"target {target!r} is not a class index; pass an int, a label or cw.Unit")
        try:
            index = int(target)
        except (TypeError, ValueError):
            raise TargetError(
                f"cannot use {target!r} as a target; pass a class index, a class label string or cw.Unit(layer, channel)"
            ) from None
        if index != target:
            raise TargetError(f"class index must be an integer, got {target!r}")
        n = self.num_classes
        if not 0 <= index < n:
            raise TargetError(f"class index {index} is out of range; the model has {n} classes (0..{n - 1})")
        return ClassTarget(index, self.label(index))

    def top_class(self, image: ImageLike) -> int:
        return int(self.logits(image).argmax())
