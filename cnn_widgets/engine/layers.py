"""Discovering the explorable layers of any CNN and their receptive fields, from one traced pass.

One forward pass on a blank image records, for every module call, its output shape and the
order in which calls start and finish. A :class:`torch.overrides.TorchFunctionMode` follows the
same pass through *every* torch operation (modules and functional calls alike) and propagates a
receptive field per tensor:

* each spatial axis carries ``(size, jump, start)``: output pixel ``p`` sees the input interval
  ``[start + p*jump, start + p*jump + size - 1]`` (``start`` may be negative: padding);
* a convolution or pooling with kernel ``k``, stride ``s``, padding ``q``, dilation ``d`` maps it to
  ``(size + (k-1)*d*jump, jump*s, start - q*jump)`` (Dumoulin & Visin, "A guide to convolution
  arithmetic", and Araujo et al., "Computing receptive fields of CNNs", Distill 2019);
* elementwise operations and concatenation take the union of their inputs' intervals (so a
  residual block's field is that of its widest branch);
* anything that mixes all positions (global pooling, flatten, linear) has the whole image as
  its field; a broadcast 1x1 operand (a squeeze-and-excitation gate) rescales whole channels and
  does not widen the field of what it multiplies.

The same pass records which module calls each tensor comes from, so each layer knows the layers it
reads (``inputs``, two or more at a residual add or a concatenation) and the nearest layer every
path to it goes through (``input_layer``): residual handling follows the graph, not module classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .hooks import tensor_version, this_thread_only
from .tokens import TOKENS, Copied, TokenLayout, token_layout
from .tracing import INPUT, ReceptiveField, ReceptiveFieldTracer, to_receptive_field

#: A receptive field along one axis: (size, jump, start).


@dataclass
class LayerInfo:
    """One explorable layer.

    Attributes
    ----------
    name
        Dotted module name, usable in ``cw.Unit(name, channel)``.
    kind
        ``"conv"``, ``"linear"``, ``"pool"``, ``"activation"`` or ``"block"`` (a container with
        convolutions inside, e.g. a residual block).
    shape
        Output shape without the batch dimension: ``(C, H, W)`` or ``(C,)``.
    receptive_field
        :class:`ReceptiveField` of one output position (``None`` when it cannot be traced, e.g.
        after an upsampling).
    input_layer
        The nearest explorable layer that every path from the image to this layer goes through
        (its immediate dominator in the traced graph; for a chain, simply the layer before).
    mixes_channels
        Whether an output channel depends on several input channels (convolutions other than
        depthwise, linear layers, blocks, and joins such as a residual add). Contribution trees
        step across such layers.
    inputs
        The explorable layers whose outputs this layer reads directly (two or more at a join:
        a residual add, a concatenation).
    fed_by
        The explorable layer whose very output tensor, unchanged, is this layer's one argument
        (``None`` when anything runs in between: a batch norm, a reshape, an in-place change).
    layout
        For a transformer block (``[1, tokens, C]``) or a channels-last stage (``[1, H, W, C]``): how
        its output holds the ``[C, h, w]`` map the engine shows (:class:`TokenLayout`); ``None`` for
        a ``[1, C, H, W]`` or ``[1, C]`` layer. Its receptive field is then its patch, for display.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    module_type: str
    receptive_field: ReceptiveField | None = None
    input_layer: str | None = None
    mixes_channels: bool = False
    index: int = 0
    inputs: tuple[str, ...] = ()
    fed_by: str | None = None
    layout: TokenLayout | None = None
    changed_later: bool = False  # the model adds to its output in place afterwards (``result += input``)
    _module: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def is_spatial(self) -> bool:
        return len(self.shape) == 3

    @property
    def capture(self) -> TokenLayout | Copied | None:
        """How a forward hook reads this layer: its layout, handing the rest of the pass a copy when the
        model changes the output in place later (:class:`~.tokens.Copied`)."""
        return Copied(self.layout) if self.changed_later else self.layout

    @property
    def is_join(self) -> bool:
        """A block, or a layer that joins several paths (a residual add read through its activation)."""
        return self.kind == "block" or len(self.inputs) > 1

    def __str__(self) -> str:
        rf = self.receptive_field
        rf_text = "global" if rf and rf.is_global else (f"rf {rf.size[0]}x{rf.size[1]} stride {rf.stride[0]}" if rf else "rf ?")
        if self.layout is not None:
            rf_text = f"{self.layout}, " + ("global" if rf_text == "global" else f"shown on its {rf_text[3:]} patches")
        return f"{self.name} ({self.kind}, {'x'.join(map(str, self.shape))}, {rf_text})"


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.PReLU, nn.Hardtanh)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool1d, nn.AvgPool1d)
_SKIP = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def layer_kind(module: nn.Module) -> str | None:
    """Kind of a module as an explorable layer, or None if it is not one by itself."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _POOLS) or "pool" in type(module).__name__.lower():
        return "pool"
    if isinstance(module, _ACTIVATIONS):
        return "activation"
    if isinstance(module, _SKIP):
        return None
    if any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules()) and len(list(module.children())):
        return "block"
    return None


def _mixes_channels(module: nn.Module, kind: str) -> bool:
    if kind in ("linear", "block"):
        return True
    if kind == "conv":
        return not (module.groups > 1 and module.groups == module.in_channels == module.out_channels)
    return False


def discover_layers(model: nn.Module, example: torch.Tensor) -> list[LayerInfo]:
    """Trace one forward pass of ``model`` on ``example`` ([1, 3, H, W]) and list explorable layers.

    A module is explorable when it is called exactly once, returns a ``[1, C, H, W]`` or ``[1, C]``
    tensor, and is a conv / linear / pool / activation module or a block of such modules whose
    output is not simply one of its children's outputs. Layers are ordered by when their output
    is produced.
    """
    names = {m: n for n, m in model.named_modules() if n}
    calls: dict[str, dict] = {}
    clock = [0]
    handles = []
    tracer = ReceptiveFieldTracer(example)
    reads: dict[tuple[str, int], frozenset] = {}  # module call -> the calls its inputs come from
    outer: dict[tuple[str, int], list[tuple[str, int]]] = {}  # call -> enclosing calls returning its very output
    produced: dict[int, list[tuple[str, torch.Tensor, int]]] = {}  # tensor id -> (module, tensor, version) per return
    fed: dict[str, list[str]] = {}  # module -> the modules that returned its one argument, unchanged since
    picks: set[str] = set()  # modules that read a token picked out of a transformer's tokens (the class token)

    def pre_hook(module, inputs):
        name = names[module]
        entry = calls.setdefault(name, {"count": 0})
        entry["count"] += 1
        entry["pre"] = clock[0]
        clock[0] += 1
        reads[(name, entry["count"] - 1)] = tracer.sources_of(inputs)
        if any(isinstance(x, torch.Tensor) and id(x) in tracer.picked for x in inputs):
            picks.add(name)
        if len(inputs) == 1 and isinstance(inputs[0], torch.Tensor):
            x = inputs[0]
            version = tensor_version(x)
            fed[name] = [n for n, t, v in produced.get(id(x), ()) if t is x and version is not None and v == version]

    def post_hook(module, _inputs, output):
        name = names[module]
        entry = calls[name]
        entry["post"] = clock[0]
        clock[0] += 1
        entry["output"] = output
        entry["version"] = tensor_version(output) if isinstance(output, torch.Tensor) else None
        if isinstance(output, torch.Tensor):
            produced.setdefault(id(output), []).append((name, output, tensor_version(output)))
        call = (name, entry["count"] - 1)
        main = output[0] if isinstance(output, (tuple, list)) and output else output
        if isinstance(main, torch.Tensor):
            found = tracer.sources.get(id(main), frozenset())
            inner = [c for c in found if c != INPUT and c[0].startswith(name + ".")]
            # a container returning a descendant's output: the descendant's call stands for both. When
            # the output also comes from outside (ConvNeXt's in-place ``result += input``) the
            # container computed it: a residual join of its own.
            if inner and len(inner) == len(found):
                outer.setdefault(inner[0], []).append(call)
            else:
                tracer.tag(main, call)

    try:
        for module in names:
            handles.append(module.register_forward_pre_hook(this_thread_only(pre_hook)))
            handles.append(module.register_forward_hook(this_thread_only(post_hook)))
        # outside inference mode even when called inside it: the outputs keep version counters
        with torch.inference_mode(False), torch.no_grad(), tracer:
            model(example)
    finally:
        for h in handles:
            h.remove()

    modules = dict(model.named_modules())
    candidates: list[tuple[str, dict, str]] = []
    layouts: dict[str, TokenLayout] = {}
    for name, entry in calls.items():
        out = entry.get("output")
        if entry["count"] != 1 or not isinstance(out, torch.Tensor) or out.shape[0] != 1:
            continue
        layout = token_layout(out, tracer.grids, out.dim() == 4 and tracer.spatial_axes(out) == (1, 2))
        if layout is not None and any(True for _ in modules[name].children()):
            layouts[name] = layout  # a transformer block, a Swin stage (containers only: not their MLP's linears)
            continue
        kind = layer_kind(modules[name])
        if kind is None or out.dim() not in (2, 4) or tracer.spatial_axes(out) != (out.dim() - 2, out.dim() - 1):
            continue  # not a layer, or a channels-last [1, H, W, C] map inside a block (ConvNeXt's MLP)
        candidates.append((name, entry, kind))
    candidates += [(name, calls[name], "block") for name in _token_blocks(layouts, modules)]

    # a container whose output is the very tensor one of its explorable descendants returned adds nothing
    output_owner: dict[int, str] = {}
    for name, entry, kind in sorted(candidates, key=lambda c: -len(c[0])):
        output_owner.setdefault(id(entry["output"]), name)
    kept = [(n, e, k) for n, e, k in candidates if k != "block" or output_owner[id(e["output"])] == n]
    # a pool/activation wrapper (e.g. timm's SelectAdaptivePool2d = pool + flatten) stands for its insides
    wrappers = [n for n, _, k in kept if k != "block" and any(True for _ in modules[n].children())]
    kept = [(n, e, k) for n, e, k in kept if not any(n.startswith(w + ".") for w in wrappers)]
    kept.sort(key=lambda c: c[1]["post"])

    image_hw = tuple(example.shape[-2:])
    inputs = _layer_inputs([n for n, _, _ in kept], reads, outer)
    kept = _with_extra_tokens(kept, layouts, inputs, picks)
    dominator = _immediate_dominators([n for n, _, _ in kept], inputs)
    kept_names = {n for n, _, _ in kept}
    layers: list[LayerInfo] = []
    for index, (name, entry, kind) in enumerate(kept):
        module = modules[name.removesuffix(TOKENS)]
        layout = layouts.get(name)
        if layout is None:
            shape, field_ = tuple(entry["output"].shape[1:]), to_receptive_field(tracer.field_of(entry["output"]), image_hw)
        else:
            shape, field_ = tuple(layout.to_map(entry["output"]).shape[1:]), _patch_field(layout, image_hw)
        layers.append(
            LayerInfo(
                name=name,
                kind=kind,
                shape=shape,
                module_type=type(module).__name__,
                receptive_field=field_,
                input_layer=dominator[name],
                mixes_channels=_mixes_channels(module, kind) or len(inputs[name]) > 1,
                index=index,
                inputs=tuple(sorted(inputs[name] - {INPUT}, key=[n for n, _, _ in kept].index)),
                fed_by=next((n for n in fed.get(name, ()) if n in kept_names), None),
                layout=layout,
                changed_later=id(entry["output"]) in tracer.summed_into and entry["version"] is not None
                and tensor_version(entry["output"]) != entry["version"],
                _module=module,
            )
        )
    return layers


def _token_blocks(layouts: dict[str, TokenLayout], modules: dict[str, nn.Module]) -> list[str]:
    """The token maps that are layers: each item of a list of blocks (``blocks.3``, a Swin stage's
    ``blocks.1``) and every outermost one (the patch embedding, a Swin stage); not what runs inside a
    block (its attention, its MLP), nor a wrapper of blocks (a Swin stage, torchvision's encoder)."""

    def parent(name: str) -> str:
        return name.rpartition(".")[0]

    def in_list(name: str) -> bool:
        return isinstance(modules.get(parent(name)), (nn.Sequential, nn.ModuleList))

    def outermost(name: str) -> bool:
        return not any(name.startswith(other + ".") for other in layouts)

    found = [name for name in layouts if in_list(name) or outermost(name)]
    # a wrapper of such layers (a Swin stage, torchvision's encoder) adds only its last norm or merge
    return [name for name in found if not any(other.startswith(name + ".") for other in found)]


def _with_extra_tokens(kept: list, layouts: dict, inputs: dict, picks: set[str]) -> list:
    """``kept`` with a ``"<block>:tokens"`` layer after each block that has extra tokens (its layout
    and inputs added to ``layouts`` and ``inputs``); a layer reading a token picked out of a block (a
    head on the class token) reads that layer instead of the block's patch map."""
    out = []
    for name, entry, kind in kept:
        out.append((name, entry, kind))
        layout = layouts.get(name)
        if layout is not None and layout.prefix and not layout.extra_only:
            layouts[name + TOKENS] = layout.extras()
            inputs[name + TOKENS] = set(inputs[name])
            out.append((name + TOKENS, entry, kind))
    for name in picks & set(inputs):
        inputs[name] = {i + TOKENS if i + TOKENS in inputs else i for i in inputs[name]}
    return out


def _patch_field(layout: TokenLayout, image_hw: tuple[int, int]) -> ReceptiveField:
    """A token's patch of the image (``image / grid`` on a side; what a token is shown with); the
    extra tokens see the whole image."""
    if layout.extra_only:
        return ReceptiveField(size=tuple(image_hw), stride=tuple(image_hw), start=(0, 0), is_global=True)
    step = tuple(max(1, round(image_hw[i] / layout.grid[i])) for i in range(2))
    return ReceptiveField(size=step, stride=step, start=(0, 0))


def _layer_inputs(kept: list[str], reads: dict, outer: dict) -> dict[str, set]:
    """For each kept layer, the kept layers (or :data:`INPUT`) its inputs come from directly.

    A module call that is not an explorable layer (a batch norm, a reused ReLU, a container) is
    looked through to what it read, unless an enclosing kept call returned its very output.
    """
    kept_set = set(kept)
    memo: dict = {}

    def resolve(call) -> frozenset:
        if call == INPUT:
            return frozenset({INPUT})
        if call[0] in kept_set:
            return frozenset({call[0]})
        for wrapper in outer.get(call, ()):
            if wrapper[0] in kept_set:
                return frozenset({wrapper[0]})
        if call not in memo:
            memo[call] = frozenset()  # guards a cycle, which a forward pass cannot make
            memo[call] = frozenset().union(*(resolve(c) for c in reads.get(call, ())))
        return memo[call]

    return {name: set().union(*(resolve(c) for c in reads.get((name, 0), ()))) for name in kept}


def _immediate_dominators(kept: list[str], inputs: dict[str, set]) -> dict[str, str | None]:
    """The nearest kept layer every path from the image to each layer passes through (None: the image).

    ``kept`` is in forward order, which is a topological order of the graph: a layer's inputs are
    finished before it starts.
    """
    order = {name: i for i, name in enumerate(kept)}
    dominators: dict = {INPUT: {INPUT}}
    result: dict[str, str | None] = {}
    for name in kept:
        preds = [p for p in inputs[name] if p in dominators] or [INPUT]
        common = set.intersection(*(dominators[p] for p in preds))
        dominators[name] = common | {name}
        named = [d for d in common if d != INPUT]
        result[name] = max(named, key=order.__getitem__) if named else None
    return result
