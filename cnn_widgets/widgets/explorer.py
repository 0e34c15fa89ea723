"""``cw.Explorer``: the live CNN explorer widget (state in traitlets, drawing in js/).

This file holds the traits, their validation and the messages from the front end. What each panel
shows is computed in ``panels/<name>.py``; which trait change recomputes which panel is the table
in ``panels/__init__.py``; every choice, label and range the front end offers is the ``choices``
trait, read off the traits below and the engine's registries.
"""

from __future__ import annotations


import torch
import traitlets
from traitlets import Dict, Int, List, TraitError, Unicode, Union, observe, validate

import anywidget

from ..engine import CnnWidgetsError, Network, SAMPLE_IMAGES, Unit
from ..engine.images import sample_name
from ..engine.contributions import RULES
from ..engine.lrp_rules import COMPOSITES
from ..engine.lrp_mode import DEFAULT_COMPOSITE
from ..engine.scan.relevance_rank import RANKS
from ..engine.occlusion import FILLS
from ..engine.targets import REDUCES
from . import colormaps, validation
from .options import Choice, FloatRange, IntRange, check_option, describe
from .panels import PANELS, initial, lanes, panels_recomputed_by, triggers
from .panels.feature_maps import SCALINGS
from .panels.occlusion import OCCLUSION_MODES
from .panels.scan_layer import scan_summary
from .panels.top_images import DEFAULT_RECONSTRUCTION, RECONSTRUCTIONS
from .runner import Runner
from .serialization import Array
from .image_messages import CUSTOM_IMAGE, ImageMessages
from . import sizes
from .model_turns import ModelTurns
from .visualize_tab import VisualizeTab
from .trust_tab import TrustTab
from .compare_tab import CompareTab
from .unit_view import UnitView
from ..export.figure_mixin import FigureMixin  # explorer.save_figure (slide figures from the current state)
from .atlas_tab import ATLAS_TARGET, AtlasTab
from .bundle import widget_esm
from .layout_mode import LayoutMode
from .progress import PanelProgress

#: The views below the feature maps, shown one at a time (keeps the widget short enough that
#: Notebook 7 does not fold it into a scrolled output, and the tree next to the grid on a projector).
TABS = {"tree": "Contribution tree", "top_images": "Top images", "embedding": "Scanned images", "filters": "Filters",
        "visualize": "Visualise", "atlas": "Atlas", "trust": "Trust", "compare": "Compare", "unit": "Inside a unit"}
SCAN_TABS = ("top_images", "embedding", "atlas")  # shown only while a scan is attached
NETWORK_SETTINGS = ("layer", "channel", "target", "window", "stride", "tree_path", "viz_size", "viz_jitter", "unit_position")  # checked against the network


class Explorer(ImageMessages, VisualizeTab, AtlasTab, TrustTab, CompareTab, UnitView, PanelProgress, FigureMixin, LayoutMode, anywidget.AnyWidget):
    """A live, clickable explorer of a CNN on one image.

    Parameters
    ----------
    net
        A :class:`cnn_widgets.Network` (or a ``torch.nn.Module``, wrapped with defaults).
        Default: ``cw.load_default()``.
    image
        Anything ``cw.to_rgb_image`` accepts, or a sample name from ``cw.SAMPLE_IMAGES``.
        Default: the cat.
    compare
        A second network (``cw.Network`` or module) shown beside ``net`` on the same image in the
        Compare tab (``compare_net``), which opens first.

    Every displayed setting is a synced trait (``layer``, ``channel``, ``target``, ``method``,
    ``opacity``, ``window``, ``stride``, ``fill``, ``occlusion_mode``, ``k``, ``depth``, ``scaling``, ``colormap``,
    ``image_name``, ...), so ``ipywidgets.jslink`` / ``traitlets.link`` work and a second display
    of the same widget shows the same state. ``target`` is ``"top"`` (the predicted class),
    ``"unit"`` (the selected ``layer[channel]``) or a class index.
    """

    _esm = widget_esm()  # the bundle's text (a path would keep every Explorer alive: see bundle.py)

    # ---------------------------------------------------------------- settings (front end <-> kernel)
    image_name = Choice({**{name: name for name in SAMPLE_IMAGES}, CUSTOM_IMAGE: "your image"}, "cat",
                        unknown="unknown sample image {value!r}; choose one of {allowed}").tag(sync=True)
    layer = Unicode("").tag(sync=True)
    channel = Int(0).tag(sync=True)
    target = Union([Unicode(), Int()], default_value="top").tag(sync=True)
    method = Unicode("guided_backprop").tag(sync=True)  # one of choices["options"]["method"]
    opacity = FloatRange(0.6, min=0.0, max=1.0, step=0.05).tag(sync=True)
    window = IntRange(48, min=1, max=4096, step=4).tag(sync=True)  # range and default follow the input size (sizes.py)
    stride = IntRange(24, min=1, max=2048, step=4).tag(sync=True)  # at most ~28 x 28 windows; never above the window
    fill = Choice(FILLS, "mean").tag(sync=True)
    occlusion_mode = Choice(OCCLUSION_MODES, "exact").tag(sync=True)  # "fast": approximate drill-down
    k = IntRange(5, min=1, max=12).tag(sync=True)
    depth = IntRange(1, min=1, max=3).tag(sync=True)
    rule = Choice(RULES, "guided").tag(sync=True)
    composite = Choice({n: c.label for n, c in COMPOSITES.items()}, DEFAULT_COMPOSITE).tag(sync=True)  # of LRP (saliency, tree)
    top_by = Choice(RANKS, "activation").tag(sync=True)  # the Top images ranking (relevance: a scan with rank="relevance")
    reduce = Choice(REDUCES, "max").tag(sync=True)
    scaling = Choice(SCALINGS, "shared").tag(sync=True)
    colormap = Choice(colormaps.names(), "viridis").tag(sync=True)
    tree_path = List(List()).tag(sync=True)  # the expanded path of the tree: [layer, channel] steps
    reconstruction = Choice(RECONSTRUCTIONS, DEFAULT_RECONSTRUCTION).tag(sync=True)  # of the top patches
    tab = Choice(TABS, "tree").tag(sync=True)
    request_seq = Int(0).tag(sync=True)  # bumped by the front end with each change that needs the kernel

    # ---------------------------------------------------------------- results (kernel -> front end)
    # Each *_info dict is described by a TypedDict in the panel file that fills it.
    choices = Dict().tag(sync=True)  # {"options": {trait: [[value, label], ...]}, "ranges": {trait: {min, max, step}},
    #   "panels": {panel: label}, "scan_tabs": [tab, ...], "shown_only": {trait: [value]}}; set once, at construction
    layers = List(Dict()).tag(sync=True)  # [{"name", "kind", "shape"}] of every explorable layer
    image_data = Array()  # panels/image.py
    predictions = List(Dict()).tag(sync=True)  # panels/predictions.py: PredictionEntry
    fmap = Array()  # panels/feature_maps.py: uint8 [C, h, w], float32 [C], uint8 [C]; FmapInfo
    fmap_max = Array()
    fmap_dead = Array()
    fmap_info = Dict().tag(sync=True)
    saliency = Array()  # panels/saliency.py: uint8 [H, W]; SaliencyInfo
    saliency_info = Dict().tag(sync=True)
    occlusion = Array()  # panels/occlusion.py: uint8 [H, W], 128 = 0; OcclusionInfo
    occlusion_info = Dict().tag(sync=True)
    filters = Array()  # panels/filters.py; FiltersInfo
    filters_info = Dict().tag(sync=True)
    tree = Dict().tag(sync=True)  # panels/tree.py: TreeInfo
    tree_pictures = Array()  # uint8 [N, 128, 128, 3]: each node's picture cropped to its energy box
    tree_full = Array()  # uint8 [N, 112, 112, 3]: each node's whole picture (enlarged view, crop box drawn)
    scan_info = Dict().tag(sync=True)  # panels/scan_layer.py: ScanInfo; {} without a scan
    top_info = Dict().tag(sync=True)  # panels/top_images.py: TopInfo
    top_crops = Array()  # uint8 [k, h, w, 3], crop i in [i, :items[i].height, :items[i].width]
    top_reconstructions = Array()  # same layout, grey = 0
    scan_layer_info = Dict().tag(sync=True)  # panels/scan_layer.py: ScanLayerInfo
    scan_dead = Array()  # uint8 [C]: 1 where the channel (nearly) never fires over the scan
    embedding = Array()  # float32 [N, 2]: PCA of the scanned images' codes at the layer
    embedding_labels = Array()  # float32 [N]: label code (index into label_names), -1 none; None without labels
    embedding_thumbs = Array()  # uint8 [M, t, t, 3]: thumbnail of image i * thumb_step
    scan_index = Int(-1).tag(sync=True)  # which scanned image is shown (-1: not one of the scan's)
    error = Unicode("").tag(sync=True)
    status = Unicode("idle").tag(sync=True)  # "idle" | "busy" | "error"
    working = Unicode("").tag(sync=True)  # the panel being computed now (shown while busy)
    result_seq = Int(0).tag(sync=True)  # the request_seq whose results are all shown
    timings = Dict().tag(sync=True)  # {panel: seconds} of the last computation (benchmark, tests)

    # ---------------------------------------------------------------- kernel-only
    net = Union([traitlets.Instance(Network), traitlets.Instance(torch.nn.Module)], allow_none=True)  # stored as a Network
    image = traitlets.Any(allow_none=True)
    scan = traitlets.Any(allow_none=True)  # a cnn_widgets Scan (net.scan(...)) or None

    def __init__(self, net: Network | torch.nn.Module | None = None, image=None, scan=None, compare=None, **kwargs):
        self._errors: dict[str, str] = {}
        self._next_scan_index = -1
        self._image_source: str | None = None
        self._naming_image = False
        self._ready = False
        self.ranges_now: dict[str, dict] = {}  # ranges narrowed to this network (options.IntRange)
        self.panels = {row.panel.name: row.panel() for row in PANELS}
        # every computation of this widget (panels, Visualise, Atlas) runs on this one runner
        self.runner = Runner(self.panels, self._compute_panel, self._set_busy, lanes=lanes())
        self.model_turns = ModelTurns()  # the runner's threads and the kernel take turns with the model
        self._init_visualize()
        self._init_atlas()
        self._init_progress()
        self.choices = self._choices()  # before the keyword arguments: `method` is checked against it
        if net is None:
            from ..engine import load_default

            net = load_default()
        if image is None:
            image = kwargs.pop("image_name", "cat")
        # settings checked against the network are set once it is there: a bad one is refused, not replaced
        per_net = {name: kwargs.pop(name) for name in NETWORK_SETTINGS if name in kwargs}
        if compare is not None:
            kwargs.setdefault("tab", "compare")  # what the second network is for
        super().__init__(**kwargs)
        self.net = net
        for name, value in per_net.items():
            setattr(self, name, value)
        self._set_image(image)
        self.scan = scan
        self.compare_net = compare
        self._ready = True
        self.on_msg(self._on_custom_message)
        self.runner.request(initial(self), deferred=False, first_paint=True)  # in a kernel the slow panels follow

    def _choices(self) -> dict:
        options, ranges = describe(self)
        for row in PANELS:
            options.update(row.panel.options())  # built now: e.g. methods registered at run time
        options.update(self.panels["saliency"].options(getattr(self, "net", None)))  # the methods that apply to it
        options["target"] = [[value, label] for value, label in validation.TARGETS.items()]
        return {"options": options, "ranges": ranges, "panels": {row.panel.name: row.panel.label for row in PANELS},
                "scan_tabs": list(SCAN_TABS), "shown_only": {"image_name": [CUSTOM_IMAGE]},
                "layout": LayoutMode.layout_thresholds()}

    # ---------------------------------------------------------------- validation (what depends on the network)
    @validate("net")
    def _valid_net(self, proposal):
        return validation.check_net(proposal["value"])

    @validate("image")
    def _valid_image(self, proposal):
        try:
            return validation.check_image(self.net, proposal["value"])
        except CnnWidgetsError as exc:
            self._report("image", str(exc))
            raise TraitError(str(exc)) from exc

    @validate("scan")
    def _valid_scan(self, proposal):
        return validation.check_scan(proposal["value"])

    @validate("method")
    def _valid_method(self, proposal):  # the registry's methods when this Explorer was made
        check_option("method", proposal["value"], [name for name, _ in self.choices["options"]["method"]])
        return proposal["value"]

    @validate("layer")
    def _valid_layer(self, proposal):
        return validation.check_layer(self.net, proposal["value"])

    @validate("channel")
    def _valid_channel(self, proposal):
        return validation.check_channel(self.net, self.layer, proposal["value"])

    @validate("target")
    def _valid_target(self, proposal):
        if proposal["value"] == ATLAS_TARGET:  # an atlas cell's direction (atlas_tab.py)
            return self.check_atlas_target()
        return validation.check_target(self.net, proposal["value"])

    @validate("tree_path")
    def _valid_tree_path(self, proposal):
        return validation.check_tree_path(self.net, proposal["value"], self.target, self.layer, ATLAS_TARGET)

    # ---------------------------------------------------------------- changes
    def notify_change(self, change):
        # A change and the changes its observers make are one batch: the panels they dirty are
        # computed once, after every observer ran (a new layer first puts the channel in range).
        with self.runner.batch():
            super().notify_change(change)

    @observe(*triggers())
    def _recompute(self, change):
        if self._ready:
            self.runner.request(panels_recomputed_by(change["name"], self))

    @observe("net")
    def _net_changed(self, change):
        net = change["new"]
        for panel in self.panels.values():
            panel.forget()
        self.layers = [{"name": info.name, "kind": info.kind, "shape": list(info.shape)} for info in net.layers]
        self.panels["visualize"].forget_all()
        self.ranges_now = {**sizes.occlusion_ranges(net.input_size), **sizes.visualize_ranges(net.input_size)}
        self.choices = self._choices()
        with self.hold_trait_notifications():
            defaults = {**sizes.occlusion_defaults(net.input_size), **sizes.visualize_defaults(net.input_size)}
            for group in (("window", "stride"), ("viz_size", "viz_jitter")):  # fit this input
                if change["old"] is None or not all(sizes.fits(getattr(self, n), self.ranges_now[n]) for n in group):
                    for name in group:
                        setattr(self, name, defaults[name])
            if self.layer not in net.layer_names:
                self.layer = validation.default_layer(net)
            if self.channel >= net.layer(self.layer).channels:
                self.channel = 0
            if isinstance(self.target, int) and self.target >= net.num_classes:
                self.target = "top"
            self.tree_path = []

    @observe("image")
    def _image_changed(self, change):
        for panel in self.panels.values():
            panel.forget()
        self._clear_error("image")
        # a sample passed by value is named as one, not "your image"
        name, self._image_source = self._image_source or sample_name(change["new"]) or CUSTOM_IMAGE, None
        self.scan_index, self._next_scan_index = self._next_scan_index, -1
        self._naming_image = True
        try:
            self.image_name = name
        finally:
            self._naming_image = False
        self.tree_path = []

    @observe("image_name")
    def _image_name_changed(self, change):
        if not self._naming_image and change["new"] != CUSTOM_IMAGE:
            self._set_image(change["new"])

    @observe("layer")
    def _layer_changed(self, change):
        if self.net is not None:
            self.channel = self._channel_on(change["new"], self.channel)

    def _channel_on(self, layer: str, channel: int) -> int:
        """``channel`` on ``layer``, or 0 where the layer has fewer channels (the rule a new layer follows)."""
        return channel if channel < self.net.layer(layer).channels else 0

    @observe("window", "stride")
    def _keep_stride_within_window(self, change):
        # a stride longer than the window leaves pixels no window covers (the engine refuses it): the other follows
        if self.stride > self.window:
            if change["name"] == "window":
                self.stride = self.window
            else:
                self.window = self.stride

    @observe("target", "k", "depth", "rule", "reduce", "composite")
    def _tree_root_changed(self, change):
        self.tree_path = []  # the expanded path belongs to the old tree

    @observe("layer", "channel")
    def _selected_root_changed(self, change):
        if self.target == "unit":  # the selection is the tree's root: a new one starts a new tree
            self.tree_path = []

    @observe("scan")
    def _scan_changed(self, change):
        self.scan_info = scan_summary(change["new"])
        if change["new"] is None:
            if self.tab in SCAN_TABS:
                self.tab = "tree"
        elif change["old"] is None:
            self.tab = "top_images"  # a scan was just attached: show what it gives

    @observe("error")
    def _error_changed(self, change):
        if not self.runner.pending:
            self.status = "error" if change["new"] else "idle"

    # ---------------------------------------------------------------- front-end messages
    def set_state(self, sync_data):
        """Apply a front-end update; an invalid value becomes the ``error`` trait, not a dead widget."""
        if "tree_path" in sync_data and self._stale_tree_path(sync_data["tree_path"]):
            # a click on a tree that is no longer shown (the root changed meanwhile): dropped, as the click was
            sync_data = {k: v for k, v in sync_data.items() if k != "tree_path"}
            self.send_state(["tree_path"])
        try:
            with self.runner.batch():
                super().set_state(sync_data)
            self._clear_error("input")  # a valid update: the last rejected one no longer matters
        except TraitError as exc:
            self._report("input", str(exc))
            if "request_seq" in sync_data:  # the rejected update still counts as answered
                self.request_seq = int(sync_data["request_seq"])
            # put the front end back on the kernel's (valid) values
            self.send_state([k for k in sync_data if k in self.keys])
        if not self.runner.pending and self.result_seq != self.request_seq:
            self.result_seq = self.request_seq  # nothing to compute for this request

    def _stale_tree_path(self, steps) -> bool:
        return validation.stale_tree_path(self.net, self.target, self.layer, steps, atlas=ATLAS_TARGET)

    def _set_image(self, image, name: str | None = None) -> None:
        if isinstance(image, str) and image in SAMPLE_IMAGES:
            name = image
        self._image_source = name
        try:
            self.image = image
        finally:
            self._image_source = None

    # ---------------------------------------------------------------- errors and busy state
    def _report(self, panel: str, message: str) -> None:
        self._errors[panel] = message
        self._show_errors()

    def _clear_error(self, panel: str) -> None:
        if self._errors.pop(panel, None) is not None:
            self._show_errors()

    def _show_errors(self) -> None:
        # one line per distinct message (a bad image fails every panel the same way)
        by_message: dict[str, list[str]] = {}
        for panel, message in self._errors.items():
            by_message.setdefault(message, []).append(panel)
        self.error = "\n".join(
            message if names in (["input"], ["image"]) else f"{', '.join(names)}: {message}"
            for message, names in by_message.items()
        )

    def _set_busy(self, busy: bool) -> None:
        if busy:
            self.status = "busy"
        else:
            with self.hold_sync():
                self.working = ""
                self.status = "error" if self.error else "idle"
                self.result_seq = self.request_seq

    # ---------------------------------------------------------------- computing one panel
    def resolved_target(self):
        """The engine target of saliency, occlusion and the tree: a class index or a ``cw.Unit``."""
        if self.target == "unit":
            # read on a worker thread, the pair may be a new layer and the old channel, for the moment
            # before the layer's observer resets it: the unit is then the one that reset gives
            layer = self.layer
            return Unit(layer, self._channel_on(layer, self.channel))
        if self.target == "top":
            return self.net.top_class(self.image)
        if self.target == ATLAS_TARGET:
            return self.atlas_direction()
        return int(self.target)
