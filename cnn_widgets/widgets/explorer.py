"""``cw.Explorer``: the live CNN explorer widget (state in traitlets, drawing in js/)."""

from __future__ import annotations

import io
import math
import pathlib
import time
import traceback

import numpy as np
import torch
import traitlets
from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, Union, observe, validate

import anywidget

from ..engine import CnnWidgetsError, Network, SAMPLE_IMAGES, Unit, sample_image, to_rgb_image
from ..engine.errors import closest_names
from . import colormaps, panels
from .scheduler import Pipeline
from .serialization import Array

BUNDLE = pathlib.Path(__file__).resolve().parent.parent / "static" / "explorer.js"

#: Panels in the order they are computed (cheap first, occlusion last).
PANELS = ("image", "predictions", "fmap", "scan_layer", "filters", "top_images", "saliency", "tree", "occlusion")
#: Reconstructions offered beside the top patches (``Scan.top_images(method=...)``).
RECONSTRUCTIONS = ("deconvnet", "guided_backprop", "gradient")
#: The panels below the feature maps, shown one at a time (keeps the widget short enough that
#: Notebook 7 does not fold it into a scrolled output, and the tree next to the grid on a projector).
TABS = ("tree", "top_images", "embedding", "filters")
SCAN_TABS = ("top_images", "embedding")
#: At most this many scatter thumbnails are sent (more images: every n-th one has a thumbnail).
MAX_EMBEDDING_THUMBS = 5000
from ..engine.occlusion import FILLS as OCCLUSION_FILLS
CUSTOM_IMAGE = "custom"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def default_layer(net: Network) -> str:
    """A mid-level layer worth showing first: the last block/conv output still at least 14 pixels wide."""
    spatial = [layer for layer in net.layers if layer.is_spatial and layer.shape[1] >= 14]
    for kinds in (("block",), ("conv", "activation")):
        good = [layer for layer in spatial if layer.kind in kinds]
        if good:
            return good[-1].name
    return ([layer for layer in net.layers if layer.is_spatial] or net.layers)[-1].name


class Explorer(anywidget.AnyWidget):
    """A live, clickable explorer of a CNN on one image.

    Parameters
    ----------
    net
        A :class:`cnn_widgets.Network` (or a ``torch.nn.Module``, wrapped with defaults).
        Default: ``cw.load_default()``.
    image
        Anything ``cw.to_rgb_image`` accepts, or a sample name from ``cw.SAMPLE_IMAGES``.
        Default: the cat.

    Every displayed setting is a synced trait (``layer``, ``channel``, ``target``, ``method``,
    ``opacity``, ``window``, ``stride``, ``fill``, ``k``, ``depth``, ``scaling``, ``colormap``,
    ``image_name``, ...), so ``ipywidgets.jslink`` / ``traitlets.link`` work and a second display
    of the same widget shows the same state. ``target`` is ``"top"`` (the predicted class),
    ``"unit"`` (the selected ``layer[channel]``) or a class index.
    """

    _esm = BUNDLE

    # ---------------------------------------------------------------- settings (front end <-> kernel)
    image_name = Unicode("cat").tag(sync=True)
    layer = Unicode("").tag(sync=True)
    channel = Int(0).tag(sync=True)
    target = Union([Unicode(), Int()], default_value="top").tag(sync=True)
    method = Unicode("guided_backprop").tag(sync=True)
    opacity = Float(0.6).tag(sync=True)
    window = Int(48).tag(sync=True)
    stride = Int(24).tag(sync=True)
    fill = Unicode("mean").tag(sync=True)
    k = Int(5).tag(sync=True)
    depth = Int(1).tag(sync=True)
    rule = Unicode("guided").tag(sync=True)
    reduce = Unicode("max").tag(sync=True)
    scaling = Unicode("shared").tag(sync=True)
    colormap = Unicode("viridis").tag(sync=True)
    tree_path = List(List()).tag(sync=True)
    reconstruction = Unicode("deconvnet").tag(sync=True)  # of the top patches: deconvnet | guided_backprop | gradient
    tab = Unicode("tree").tag(sync=True)  # the panel shown below the feature maps: tree | top_images | embedding | filters
    request_seq = Int(0).tag(sync=True)

    # ---------------------------------------------------------------- results (kernel -> front end)
    layers = List(Dict()).tag(sync=True)
    image_data = Array()
    predictions = List(Dict()).tag(sync=True)
    target_label = Unicode("").tag(sync=True)
    fmap = Array()
    fmap_max = Array()
    fmap_dead = Array()
    fmap_info = Dict().tag(sync=True)
    saliency = Array()
    saliency_info = Dict().tag(sync=True)
    occlusion = Array()
    occlusion_info = Dict().tag(sync=True)
    filters = Array()
    filters_info = Dict().tag(sync=True)
    tree = Dict().tag(sync=True)
    tree_pictures = Array()  # uint8 [N, 128, 128, 3]: each node's picture cropped to its energy box
    tree_full = Array()  # uint8 [N, 112, 112, 3]: each node's whole picture (enlarged view, crop box drawn)
    # dataset scan (issue 4): empty / None while no scan is attached
    scan_info = Dict().tag(sync=True)  # {"text", "layers", "count", "k", "labels"}; {} without a scan
    top_info = Dict().tag(sync=True)  # {"unit": "layer:channel", "items": [...], "message", "method", "seq"}
    top_crops = Array()  # uint8 [k, h, w, 3], crop i in [i, :items[i].height, :items[i].width]
    top_reconstructions = Array()  # same layout, grey = 0
    scan_dead = Array()  # uint8 [C] of scan_layer_info["layer"]: 1 where the channel (nearly) never fires
    scan_layer_info = Dict().tag(sync=True)  # {"layer", "in_scan", "message", "dead", "label_names", "thumb_step", ...}
    embedding = Array()  # float32 [N, 2]: PCA of the scanned images' codes at the layer
    embedding_labels = Array()  # float32 [N]: label code (index into label_names), -1 none; None without labels
    embedding_thumbs = Array()  # uint8 [M, t, t, 3]: thumbnail of image i * thumb_step
    scan_index = Int(-1).tag(sync=True)  # which scanned image is shown (-1: not one of the scan's)
    methods = List(Unicode(), default_value=list(panels.SALIENCY_METHODS)).tag(sync=True)
    fills = List(Unicode(), default_value=list(OCCLUSION_FILLS)).tag(sync=True)
    sample_images = List(Unicode(), default_value=list(SAMPLE_IMAGES)).tag(sync=True)
    colormap_names = List(Unicode(), default_value=colormaps.names()).tag(sync=True)
    error = Unicode("").tag(sync=True)
    status = Unicode("idle").tag(sync=True)
    working = Unicode("").tag(sync=True)  # the panel being computed now (shown while busy)
    result_seq = Int(0).tag(sync=True)
    timings = Dict().tag(sync=True)  # seconds per panel of the last computation (benchmark, tests)

    # ---------------------------------------------------------------- kernel-only
    net = traitlets.Instance(Network, allow_none=True)
    image = traitlets.Any(allow_none=True)
    scan = traitlets.Any(allow_none=True)  # a cnn_widgets Scan (net.scan(...)) or None

    def __init__(self, net: Network | None = None, image=None, scan=None, **kwargs):
        self._errors: dict[str, str] = {}
        self._thumb_cache: tuple | None = None
        self._next_scan_index = -1
        self._tree_cache: dict[tuple, tuple[dict, np.ndarray]] = {}
        self._image_version = 0
        self._image_source: str | None = None
        self._naming_image = False
        self._ready = False
        self.pipeline = Pipeline(PANELS, self._compute_panel, self._set_busy)
        if net is None:
            from ..engine import load_default

            net = load_default()
        if image is None:
            image = kwargs.pop("image_name", "cat")
        super().__init__(**kwargs)
        self.net = net
        self._set_image(image)
        self.scan = scan
        self._ready = True
        self.on_msg(self._on_custom_message)
        self.pipeline.request(PANELS, deferred=False)

    # ---------------------------------------------------------------- validation
    @validate("net")
    def _valid_net(self, proposal):
        value = proposal["value"]
        if isinstance(value, torch.nn.Module):
            value = Network(value)
        if not isinstance(value, Network):
            raise TraitError(f"net must be a cw.Network or a torch.nn.Module, got {type(value).__name__}")
        value.layers  # raises ModelError for models without conv layers
        return value

    @validate("image")
    def _valid_image(self, proposal):
        value = proposal["value"]
        try:
            if isinstance(value, str) and value in SAMPLE_IMAGES:
                value = sample_image(value)
            elif isinstance(value, torch.Tensor):
                value = value.detach().clone()
            else:
                value = to_rgb_image(value)
            if self.net is not None:
                self.net.prepare(value)  # wrong sizes, NaNs, ... are refused before anything changes
            return value
        except CnnWidgetsError as exc:
            self._report("image", str(exc))
            raise TraitError(str(exc)) from exc

    @validate("scan")
    def _valid_scan(self, proposal):
        value = proposal["value"]
        if value is None:
            return None
        if not all(callable(getattr(value, name, None)) for name in ("top_images", "embedding", "dead_channels")):
            raise TraitError(f"scan must be the result of net.scan(images) (a cnn_widgets Scan), got {type(value).__name__}")
        return value

    @validate("image_name")
    def _valid_image_name(self, proposal):
        value = proposal["value"]
        if value != CUSTOM_IMAGE and value not in SAMPLE_IMAGES:
            raise TraitError(f"unknown sample image {value!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
        return value

    @validate("layer")
    def _valid_layer(self, proposal):
        value = proposal["value"]
        if self.net is None:
            return value
        names = self.net.layer_names
        if value not in names:
            hint = closest_names(str(value), names)
            raise TraitError(
                f"no explorable layer {value!r}" + (f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else "")
            )
        return value

    @validate("channel")
    def _valid_channel(self, proposal):
        value = int(proposal["value"])
        if self.net is not None and self.layer:
            channels = self.net.layer(self.layer).channels
            if not 0 <= value < channels:
                raise TraitError(f"channel {value} is out of range for layer {self.layer!r} (0..{channels - 1})")
        elif value < 0:
            raise TraitError(f"channel must be >= 0, got {value}")
        return value

    @validate("target")
    def _valid_target(self, proposal):
        value = proposal["value"]
        if isinstance(value, str):
            if value in ("top", "unit"):
                return value
            if value.lstrip("-").isdigit():
                value = int(value)
            elif self.net is not None:
                try:
                    return self.net.class_index(value)
                except CnnWidgetsError as exc:
                    raise TraitError(str(exc)) from exc
        if isinstance(value, bool) or not isinstance(value, int):
            raise TraitError(f"target must be 'top', 'unit', a class index or a class label, got {value!r}")
        if self.net is not None and not 0 <= value < self.net.num_classes:
            raise TraitError(f"class index {value} is out of range (0..{self.net.num_classes - 1})")
        return value

    def _choice(name, options):  # noqa: N805 - a validator factory used in the class body
        @validate(name)
        def check(self, proposal):
            value = proposal["value"]
            allowed = options(self) if callable(options) else options
            if value not in allowed:
                raise TraitError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
            return value

        return check

    _valid_method = _choice("method", panels.SALIENCY_METHODS)
    _valid_fill = _choice("fill", OCCLUSION_FILLS)
    _valid_rule = _choice("rule", ("guided", "gradient"))
    _valid_reduce = _choice("reduce", ("max", "sum"))
    _valid_scaling = _choice("scaling", ("shared", "per_tile"))
    _valid_colormap = _choice("colormap", lambda self: colormaps.names())
    _valid_reconstruction = _choice("reconstruction", RECONSTRUCTIONS)
    _valid_tab = _choice("tab", TABS)
    del _choice

    def _int_range(name, lo, hi):  # noqa: N805
        @validate(name)
        def check(self, proposal):
            value = proposal["value"]
            if not lo <= value <= hi:
                raise TraitError(f"{name} must be between {lo} and {hi}, got {value}")
            return value

        return check

    _valid_window = _int_range("window", 4, 224)
    _valid_stride = _int_range("stride", 8, 112)  # at most 28 x 28 windows
    _valid_k = _int_range("k", 1, 12)
    _valid_depth = _int_range("depth", 1, 3)
    del _int_range

    @validate("opacity")
    def _valid_opacity(self, proposal):
        value = float(proposal["value"])
        if not 0.0 <= value <= 1.0:
            raise TraitError(f"opacity must be between 0 and 1, got {value}")
        return value

    @validate("tree_path")
    def _valid_tree_path(self, proposal):
        path = []
        for step in proposal["value"]:
            if len(step) != 2:
                raise TraitError(f"tree_path steps are [layer, channel] pairs, got {step!r}")
            layer, channel = str(step[0]), int(step[1])
            if self.net is not None:
                info = self.net.layer(layer) if layer in self.net.layer_names else None
                if info is None or not 0 <= channel < info.channels:
                    raise TraitError(f"tree_path step {step!r} is not a unit of this network")
            path.append([layer, channel])
        return path

    # ---------------------------------------------------------------- what each change recomputes
    @observe("net")
    def _net_changed(self, change):
        self._tree_cache.clear()
        net = change["new"]
        self.layers = [
            {"name": info.name, "kind": info.kind, "shape": list(info.shape), "mixes": bool(info.mixes_channels)}
            for info in net.layers
        ]
        with self.pipeline.batch(), self.hold_trait_notifications():
            if self.layer not in net.layer_names:
                self.layer = default_layer(net)
            if self.channel >= net.layer(self.layer).channels:
                self.channel = 0
            if isinstance(self.target, int) and self.target >= net.num_classes:
                self.target = "top"
            self.tree_path = []
            self._thumb_cache = None
            if self._ready:
                self.pipeline.request(PANELS)

    @observe("image")
    def _image_changed(self, change):
        self._image_version += 1
        self._tree_cache.clear()
        self._clear_error("image")
        name, self._image_source = self._image_source or CUSTOM_IMAGE, None
        self.scan_index, self._next_scan_index = self._next_scan_index, -1
        with self.pipeline.batch():
            self._naming_image = True
            try:
                self.image_name = name
            finally:
                self._naming_image = False
            self.tree_path = []
            if self._ready:
                self.pipeline.request(("image", "predictions", "fmap", "saliency", "tree", "occlusion"))

    @observe("image_name")
    def _image_name_changed(self, change):
        if not self._naming_image and change["new"] != CUSTOM_IMAGE:
            self._set_image(change["new"])

    @observe("layer")
    def _layer_changed(self, change):
        if self.net is not None and self.channel >= self.net.layer(change["new"]).channels:
            self.channel = 0
        self._request(("fmap", "filters") + self._scan_panels("scan_layer", "top_images") + self._target_panels(unit_only=True))

    @observe("channel")
    def _channel_changed(self, change):
        self._request(("filters",) + self._scan_panels("top_images") + self._target_panels(unit_only=True))

    @observe("target")
    def _target_changed(self, change):
        self.tree_path = []
        self._request(self._target_panels())

    @observe("scaling")
    def _scaling_changed(self, change):
        self._request(("fmap",))

    @observe("method")
    def _method_changed(self, change):
        self._request(("saliency",))

    @observe("window", "stride", "fill")
    def _occlusion_changed(self, change):
        self._request(("occlusion",))

    @observe("k", "depth", "rule", "reduce")
    def _tree_settings_changed(self, change):
        self.tree_path = []
        self._request(("tree",))

    @observe("tree_path")
    def _tree_path_changed(self, change):
        self._request(("tree",))

    @observe("scan")
    def _scan_changed(self, change):
        self._thumb_cache = None
        scan = change["new"]
        if scan is None:
            self.scan_info = {}
            if self.tab in SCAN_TABS:
                self.tab = "tree"
        else:
            if change["old"] is None:
                self.tab = "top_images"  # a scan was just attached: show what it gives
            labels = scan.labels
            self.scan_info = {
                "text": repr(scan), "layers": list(scan.layers), "count": int(scan.count), "k": int(scan.k),
                "labels": labels is not None,
            }
        self._request(("scan_layer", "top_images"))

    @observe("reconstruction")
    def _reconstruction_changed(self, change):
        self._request(("top_images",))

    def _scan_panels(self, *panels_: str) -> tuple[str, ...]:
        """The scan panels among ``panels_``, when a scan is attached (without one they stay empty)."""
        return panels_ if self.scan is not None else ()

    def _target_panels(self, unit_only: bool = False) -> tuple[str, ...]:
        if unit_only and self.target != "unit":
            return ()
        return ("saliency", "tree", "occlusion")

    def _request(self, panels_: tuple[str, ...]) -> None:
        if self._ready and panels_:
            self.pipeline.request(panels_)

    # ---------------------------------------------------------------- front-end messages
    def set_state(self, sync_data):
        """Apply a front-end update; an invalid value becomes the ``error`` trait, not a dead widget."""
        try:
            with self.pipeline.batch():
                super().set_state(sync_data)
        except TraitError as exc:
            self._report("input", str(exc))
            if "request_seq" in sync_data:  # the rejected update still counts as answered
                self.request_seq = int(sync_data["request_seq"])
            # put the front end back on the kernel's (valid) values
            self.send_state([k for k in sync_data if k in self.keys])
        if not self.pipeline.dirty and self.result_seq != self.request_seq:
            self.result_seq = self.request_seq  # nothing to compute for this request

    def _on_custom_message(self, _widget, content, buffers):
        if not isinstance(content, dict):
            return
        if content.get("type") == "image" and buffers:
            self.load_image_bytes(bytes(buffers[0]), name=str(content.get("name", "uploaded image")))
        elif content.get("type") == "scan_image":
            try:
                self.load_scan_image(int(content.get("index", -1)))
            except (CnnWidgetsError, TraitError, IndexError, ValueError) as exc:
                self._report("image", str(exc))

    def load_scan_image(self, index: int) -> None:
        """Show image ``index`` of the attached scan (what a click on the embedding scatter does)."""
        if self.scan is None:
            raise CnnWidgetsError("no scan is attached; set explorer.scan = net.scan(images) first")
        if not 0 <= index < self.scan.count:
            raise CnnWidgetsError(f"image index {index} is out of range for this scan (0..{self.scan.count - 1})")
        picture = self.scan.image(index)
        self._next_scan_index = index
        try:
            self._set_image(picture, name=CUSTOM_IMAGE)
        finally:
            self._next_scan_index = -1
        self.scan_index = index  # also when it is the picture already shown (no change event then)

    def load_image_bytes(self, data: bytes, name: str = "uploaded image") -> bool:
        """Use an encoded image file (PNG, JPEG, ...) as the image; a bad file becomes ``error``."""
        from PIL import Image

        if len(data) > MAX_UPLOAD_BYTES:
            self._report("image", f"{name}: file too large ({len(data) / 2**20:.1f} MiB); use an image under 10 MiB")
            return False
        try:
            with Image.open(io.BytesIO(data)) as opened:
                opened.load()
                picture = to_rgb_image(opened)
        except Exception as exc:  # PIL raises many kinds of errors for bad files
            self._report("image", f"{name} is not a readable image ({exc}); drop a PNG or JPEG file")
            return False
        self._set_image(picture, name=CUSTOM_IMAGE)
        return True

    def _set_image(self, image, name: str | None = None) -> None:
        if isinstance(image, str) and image in SAMPLE_IMAGES:
            name = image
        self._image_source = name or CUSTOM_IMAGE
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
            message if panels_ == ["input"] or panels_ == ["image"] else f"{', '.join(panels_)}: {message}"
            for message, panels_ in by_message.items()
        )

    def _set_busy(self, busy: bool) -> None:
        if busy:
            self.status = "busy"
        else:
            with self.hold_sync():
                self.working = ""
                self.status = "error" if self.error else "idle"
                self.result_seq = self.request_seq

    @observe("error")
    def _error_changed(self, change):
        if not self.pipeline.dirty:
            self.status = "error" if change["new"] else "idle"

    def compute(self) -> None:
        """Finish any pending computation now (front-end changes are otherwise batched)."""
        self.pipeline.run_all()

    # ---------------------------------------------------------------- computing one panel
    def resolved_target(self):
        """The engine target of saliency, occlusion and the tree: a class index or a ``cw.Unit``."""
        if self.target == "unit":
            return Unit(self.layer, self.channel)
        if self.target == "top":
            return self.net.top_class(self.image)
        return int(self.target)

    def _compute_panel(self, panel: str) -> None:
        generation = self.pipeline.generation[panel]
        self.working = panel
        start = time.perf_counter()
        try:
            result = getattr(self, f"_panel_{panel}")()
        except Exception as exc:  # any failure is shown in the widget, which keeps working
            message = str(exc) if isinstance(exc, CnnWidgetsError) else f"{type(exc).__name__}: {exc}"
            self._report(panel, message)
            if not isinstance(exc, CnnWidgetsError):
                self.log.debug(traceback.format_exc())
            return
        if self.pipeline.generation[panel] != generation:
            return  # a newer request for this panel came in meanwhile; never show the stale result
        with self.hold_sync():
            for name, value in result.items():
                setattr(self, name, value)
            self.timings = {**self.timings, panel: round(time.perf_counter() - start, 4)}
            self._clear_error(panel)

    def _panel_image(self) -> dict:
        return {"image_data": self.net.display_image(self.image)}

    def _panel_predictions(self) -> dict:
        predictions = self.net.predict(self.image, k=5)
        return {
            "predictions": [
                {"label": p.label, "probability": p.probability, "index": p.index, "logit": p.logit} for p in predictions
            ]
        }

    def _panel_fmap(self) -> dict:
        activation = self.net.activations(self.image, [self.layer])[self.layer]
        maps = panels.feature_maps(activation, self.scaling)
        info = self.net.layer(self.layer)
        return {
            "fmap": maps.fmap,
            "fmap_max": maps.maxima,
            "fmap_dead": maps.dead,
            "fmap_info": {
                "layer": self.layer, "kind": info.kind, "shape": list(info.shape), "scaling": self.scaling,
                "lo": maps.lo, "hi": maps.hi, "dead": int(maps.dead.sum()), "seq": self.request_seq,
            },
        }

    def _panel_filters(self) -> dict:
        info = self.net.layer(self.layer)
        weight = self.net.filters(self.layer) if info.kind in ("conv", "linear") else None
        shown = panels.filters_display(weight, self.layer, info.kind, self.channel)
        return {
            "filters": shown.tiles,
            "filters_info": {"layer": self.layer, "mode": shown.mode, "caption": shown.caption, "seq": self.request_seq},
        }

    def _target_text(self, target) -> str:
        if isinstance(target, Unit):
            return f"unit {target.layer}[{target.channel}]"
        return f"class {self.net.label(target)}"

    def _panel_saliency(self) -> dict:
        target = self.resolved_target()
        attribution = self.net.saliency(self.image, target, method=self.method)
        heat, top = panels.saliency_display(attribution, self.method)
        return {
            "saliency": heat,
            "target_label": self._target_text(target),
            "saliency_info": {"method": self.method, "target": self._target_text(target), "top": top, "seq": self.request_seq},
        }

    def _panel_occlusion(self) -> dict:
        target = self.resolved_target()
        heat = self.net.occlusion(self.image, target, window=self.window, stride=self.stride, fill=self.fill, progress=False)
        shown, extent = panels.occlusion_display(torch.as_tensor(heat))
        return {
            "occlusion": shown,
            "occlusion_info": {
                "window": self.window, "stride": self.stride, "fill": self.fill, "extent": extent,
                "target": self._target_text(target), "seq": self.request_seq,
            },
        }

    # ---------------------------------------------------------------- dataset scan panels
    def _scan_problem(self, layer: str) -> str | None:
        """Why the scan cannot describe ``layer`` (shown in the panels), or None."""
        scan = self.scan
        scanned_net = getattr(scan, "net", None)
        if scanned_net is not None and scanned_net is not self.net and getattr(scanned_net, "model", None) is not self.net.model:
            return "the attached scan was made on another network; scan again with net.scan(images)"
        if layer not in scan.layers:
            shown = ", ".join(scan.layers[:6]) + (" …" if len(scan.layers) > 6 else "")
            return (f"layer {layer} is not in this scan (it covers {shown}); scan it with "
                    f"net.scan(images, layers=[{layer!r}]) or pick a scanned layer")
        if scan.count == 0:
            return "the scan covers no image yet"
        return None

    def _panel_scan_layer(self) -> dict:
        empty = {"scan_dead": None, "embedding": None, "embedding_labels": None, "embedding_thumbs": None}
        if self.scan is None:
            return {**empty, "scan_layer_info": {}}
        layer, scan = self.layer, self.scan
        problem = self._scan_problem(layer)
        if problem:
            return {**empty, "scan_layer_info": {"layer": layer, "in_scan": False, "message": problem, "seq": self.request_seq}}
        channels = self.net.layer(layer).channels
        dead = np.zeros(channels, np.uint8)
        dead_list = scan.dead_channels(layer)
        dead[dead_list] = 1
        info = {"layer": layer, "in_scan": True, "message": "", "dead": len(dead_list), "count": int(scan.count),
                "method": "pca", "seq": self.request_seq}
        result = {**empty, "scan_dead": dead}
        if scan.count >= 2:
            result["embedding"] = np.ascontiguousarray(scan.embedding(layer, "pca"), np.float32)
            codes, names = panels.label_codes(scan.labels, getattr(scan, "class_names", None))
            if len(names):
                result["embedding_labels"] = codes
            thumbs, step = self._scan_thumbnails()
            result["embedding_thumbs"] = thumbs
            info.update(label_names=names, thumb_step=step, thumb_size=int(thumbs.shape[1]) if thumbs is not None else 0)
        else:
            info["message"] = f"an embedding needs at least 2 scanned images, this scan covers {scan.count}"
        return {**result, "scan_layer_info": info}

    def _scan_thumbnails(self) -> tuple[np.ndarray | None, int]:
        """Thumbnails of the scanned images (every ``step``-th one), cached per scan and network."""
        scan = self.scan
        key = (id(scan), int(scan.count), id(self.net))
        if self._thumb_cache is not None and self._thumb_cache[0] == key:
            return self._thumb_cache[1], self._thumb_cache[2]
        count = int(scan.count)
        step = max(1, math.ceil(count / MAX_EMBEDDING_THUMBS))
        indices = range(0, count, step)
        size = panels.embedding_thumb_size(len(indices))
        try:
            thumbs = np.stack([panels.square_thumbnail(self.net.display_image(scan.image(i)), size) for i in indices])
        except CnnWidgetsError:
            thumbs = None  # images not available (a loaded scan without them): points only
        self._thumb_cache = (key, thumbs, step)
        return thumbs, step

    def _panel_top_images(self) -> dict:
        if self.scan is None:
            return {"top_info": {}, "top_crops": None, "top_reconstructions": None}
        layer, channel = self.layer, self.channel
        unit = f"{layer}:{channel}"
        base = {"unit": unit, "layer": layer, "channel": channel, "method": self.reconstruction, "seq": self.request_seq}
        problem = self._scan_problem(layer)
        if problem:
            return {"top_info": {**base, "items": [], "message": problem}, "top_crops": None, "top_reconstructions": None}
        try:
            top = self.scan.top_images(Unit(layer, channel), method=self.reconstruction)
        except CnnWidgetsError as exc:
            # e.g. a loaded scan without its images: the values are known, the pictures are not
            table = self.scan.top(layer)
            items = [{"index": int(i), "value": float(v)} for i, v in zip(table["indices"][channel], table["values"][channel]) if i >= 0]
            return {"top_info": {**base, "items": items, "message": str(exc)}, "top_crops": None, "top_reconstructions": None}
        shown = panels.top_patches(top)
        message = "" if shown.items else "no scanned image yet"
        return {
            "top_info": {**base, "items": shown.items, "message": message},
            "top_crops": shown.crops,
            "top_reconstructions": shown.reconstructions,
        }

    def _panel_tree(self) -> dict:
        target = self.resolved_target()
        levels, pictures = [], []
        path: list[Unit] = []
        for step in [None, *self.tree_path]:
            if step is not None:
                path.append(Unit(step[0], int(step[1])))
            level, level_pictures = self._tree_level(target, tuple(path))
            offset = len(pictures)
            pictures.extend(level_pictures)
            levels.append(_shift_pictures(level, offset))
        return {
            "tree": {"levels": levels, "path": [list(s) for s in self.tree_path], "target": self._target_text(target),
                     "k": self.k, "rule": self.rule, "reduce": self.reduce, "seq": self.request_seq},
            "tree_pictures": np.stack([crop for crop, _ in pictures]) if pictures else None,
            "tree_full": np.stack([whole for _, whole in pictures]) if pictures else None,
        }

    def _tree_level(self, target, path: tuple[Unit, ...]) -> tuple[dict, list[tuple[np.ndarray, np.ndarray]]]:
        key = (self._image_version, id(self.net), target, path, self.k, self.depth, self.rule, self.reduce)
        cached = self._tree_cache.get(key)
        if cached is not None:
            return cached
        node = self.net.contribution_tree(
            self.image, target, depth=self.depth, k=self.k, rule=self.rule, reduce=self.reduce, path=path
        )
        pictures: list[tuple[np.ndarray, np.ndarray]] = []

        def describe(n) -> dict:
            # the crop where the picture's energy is, readable at thumbnail size, and the whole picture
            box = panels.energy_box(n.picture)
            pictures.append((panels.thumbnail(n.picture, panels.THUMBNAIL, box), panels.thumbnail(n.picture, panels.FULL_THUMBNAIL)))
            entry = panels.node_json(n, len(pictures) - 1, box, tuple(n.picture.shape[-2:]))
            entry["children"] = [describe(child) for child in n.children]
            return entry

        level = describe(node)
        if len(self._tree_cache) > 64:
            self._tree_cache.clear()
        self._tree_cache[key] = (level, pictures)
        return level, pictures


def _shift_pictures(node: dict, offset: int) -> dict:
    return {**node, "picture": node["picture"] + offset, "children": [_shift_pictures(c, offset) for c in node["children"]]}


