"""The "Inside a unit" tab of the Explorer: how one number of a feature map is computed (CNN Explainer's
view, on any network the Explorer explores). The unit is the selected ``layer`` and ``channel`` at
``unit_position`` (``[y, x]`` on the layer's map; ``[]``: where the channel is largest on this image).

A click on a feature-map tile selects the channel and the position under the pointer (the front end
sets ``channel`` and ``unit_position`` together; the tab shows it when shown), a double-click also opens
the tab (``tab``: a click alone leaves the tree or any other tab in place); a click on the image
picks the selected layer's position whose receptive field is centred nearest the pixel (a message,
:meth:`UnitView.select_unit_at_pixel`). ``panels/unit.py`` computes the tab's traits, only while it
is shown. Everything the animation needs (the input and output maps) is in those traits: the front
end slides the kernel without asking the kernel.
"""

from __future__ import annotations

import traitlets
from traitlets import Dict, Int, List, TraitError, observe, validate

from ..engine import CnnWidgetsError, TargetError, Unit
from .serialization import Array

UNIT_TAB = "unit"


def check_position(net, layer: str, position) -> list[int]:
    """``position`` as the trait stores it (``[]`` or ``[y, x]``), or a ``TraitError`` saying what ``layer`` allows."""
    position = [] if position is None else list(position)
    if not position:
        return []
    if len(position) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in position):
        raise TraitError(f"unit_position must be [] (the channel's maximum) or [y, x] with integers, got {position}")
    if net is None:
        return position
    shape = net.layer(layer).shape
    if len(shape) != 3:
        raise TraitError(f"layer {layer} has no positions (its output is {list(shape)}, one number per channel); "
                         "leave unit_position empty")
    (y, x), (h, w) = position, shape[1:]
    if not (0 <= y < h and 0 <= x < w):
        raise TraitError(f"unit_position [y, x] = {position} is outside layer {layer}'s {h}×{w} map "
                         f"(y runs 0..{h - 1}, x 0..{w - 1})")
    return position


class UnitView(traitlets.HasTraits):
    """Mixed into the Explorer: ``unit_position`` and the ``unit_*`` results of ``panels/unit.py``."""

    #: What this part uses of the Explorer's other parts (read, called or set); tests/widgets/test_parts.py checks it
    USES: tuple[str, ...] = ('net', 'layer', 'channel', 'tab', 'runner', 'image_data', '_report', '_clear_error')

    unit_position = List(Int(), default_value=[]).tag(sync=True)  # [y, x] on the selected layer's map; []: its maximum
    unit_info = Dict().tag(sync=True)  # panels/unit.py: UnitInfo
    unit_patch = Array()  # float32 [k, kh, kw]: the shown input channels' windows (a pool's window: [1, kh, kw])
    unit_kernel = Array()  # float32 [k, kh, kw]
    unit_products = Array()  # float32 [k, kh, kw]
    unit_input = Array()  # float32 [k, H, W]: the shown channels' input maps (what the animation slides over)
    unit_output = Array()  # float32 [Ho, Wo]: the unit's channel of the source's output
    _unit_seen: list | None = None  # the position its observer last saw, and the map size it was on
    _unit_map: tuple | None = None

    def select_unit(self, layer: str, channel: int, position: tuple[int, int] | None = None) -> None:
        """Show the arithmetic of ``layer[channel]`` at ``position`` (``(y, x)``; ``None``: where the
        channel is largest) in the "Inside a unit" tab. Everything is checked before anything changes:
        an unknown layer, a channel or position out of range raise a ``CnnWidgetsError`` naming it."""
        info = self.net.layer(layer)  # LayerNotFoundError with the closest names
        unit = Unit(layer, channel, position)  # the types (TargetError)
        if unit.channel >= info.channels:
            raise TargetError(f"layer {layer} has {info.channels} channels (0..{info.channels - 1}); got channel {unit.channel}")
        try:
            checked = check_position(self.net, layer, unit.position)
        except TraitError as exc:
            raise TargetError(str(exc)) from None
        with self.runner.batch():  # one computation for the whole selection
            self.layer = layer  # first: a new layer's observers put the channel and position in range
            self.channel = unit.channel
            self.unit_position = checked
            self.tab = UNIT_TAB

    def select_unit_at_pixel(self, y: int, x: int) -> None:
        """Select the position of the selected layer whose receptive field is centred nearest the input
        pixel ``(y, x)`` (what a click on the image does), and open the tab."""
        info = self.net.layer(self.layer)
        field = info.receptive_field
        if len(info.shape) != 3 or field is None or field.is_global:
            raise TargetError(f"layer {self.layer} has no map positions on the image (output {list(info.shape)}); "
                              "select a convolution or pooling layer to pick a unit on the image")
        height, width = self.image_data.shape[:2] if self.image_data is not None else (None, None)
        if height is not None and not (0 <= y < height and 0 <= x < width):
            raise TargetError(f"pixel (y, x) = ({y}, {x}) is outside the {height}×{width} image")
        position = tuple(
            min(n - 1, max(0, round((p - start - (size - 1) / 2) / stride)))
            for p, start, size, stride, n in zip((y, x), field.start, field.size, field.stride, info.shape[1:]))
        self.select_unit(self.layer, self.channel, position)

    def _on_unit_message(self, content: dict) -> None:
        try:
            self.select_unit_at_pixel(int(content.get("y", -1)), int(content.get("x", -1)))
            self._clear_error("unit")
        except (CnnWidgetsError, TraitError, TypeError, ValueError) as exc:
            self._report("unit", str(exc))

    @validate("unit_position")
    def _valid_unit_position(self, proposal):
        return check_position(getattr(self, "net", None), self.layer, proposal["value"])

    @observe("unit_position")
    def _unit_position_set(self, change):
        self._unit_seen, self._unit_map = list(change["new"]), self._map_size(self.layer)

    @observe("layer")
    def _unit_layer_changed(self, change):
        """A position belongs to a map of one size: another size (or no map) starts at the new channel's
        maximum. A position sent with the layer (its observer not run yet) was checked against that layer."""
        if not self.unit_position or self.unit_position != self._unit_seen:
            return
        if self._map_size(change["new"]) != self._unit_map:
            self.unit_position = []

    def _map_size(self, layer: str) -> tuple | None:
        net = getattr(self, "net", None)
        try:
            return tuple(net.layer(layer).shape[1:]) if net is not None and layer else None
        except CnnWidgetsError:
            return None

    @observe("net")
    def _unit_net_changed(self, change):
        self.unit_position = []
