"""How the Explorer arranges its panels and which colours it uses, for each front end.

``layout_mode``: ``"full"`` shows every panel at once (a wide notebook column); ``"compact"`` shows
the bar, the layer strip and one section at a time in tabs (Image, Saliency, Occlusion, Feature maps,
then the views below the feature maps), sized to fit a narrow or height-capped cell such as marimo
edit's ~610 px output; ``"presentation"`` is for a projector: larger text and pictures, the image and
its predictions beside one other section. ``"auto"`` (the default) is ``"compact"`` when the widget's
container is narrower than ``COMPACT_WIDTH`` px or caps its height below ``COMPACT_HEIGHT`` px, and
``"full"`` otherwise; the front end decides, since only it knows the container (js/src/frontend_layout.js).

``theme``: ``"auto"`` follows the page (JupyterLab's and Voila's light and dark themes, marimo's,
VS Code's, or the page's background colour); ``"light"`` / ``"dark"`` force one.

Neither needs the kernel to recompute anything: both are display-only traits.
"""

from __future__ import annotations

import traitlets

from .options import Choice

LAYOUTS = {"auto": "layout: auto", "full": "layout: full", "compact": "layout: compact", "presentation": "layout: presentation"}
THEMES = {"auto": "theme of the page", "light": "light", "dark": "dark"}
#: Below this container width (CSS px) "auto" is compact. From here to about 818 px the full layout puts two
#: panels across (three need about 818 px); a width-capped column of at least this width (marimo's default
#: "compact" app, 740 px) gets the full layout too (js/src/frontend_layout.js chooseLayout).
COMPACT_WIDTH = 720
#: The tab labels of the views that the full layout shows at once (compact and presentation: one at a time)
SECTIONS = {"predictions": "Image", "saliency": "Saliency", "occlusion": "Occlusion", "feature_maps": "Feature maps"}
#: A container whose max-height is below this (CSS px) makes "auto" compact (marimo edit caps outputs at 610 px).
COMPACT_HEIGHT = 900


class LayoutMode(traitlets.HasTraits):
    """Mixed into the Explorer: ``layout_mode`` and ``theme`` (sent to the front end with their menus
    through the ``choices`` trait like every other :class:`~cnn_widgets.widgets.options.Choice`)."""

    #: What this part uses of the Explorer's other parts (read, called or set); tests/widgets/test_parts.py checks it
    USES: tuple[str, ...] = ()

    layout_mode = Choice(LAYOUTS, "auto").tag(sync=True)
    theme = Choice(THEMES, "auto").tag(sync=True)

    @staticmethod
    def layout_thresholds() -> dict:
        """What "auto" compares the container with, and the sections' tab labels (``choices["layout"]``)."""
        return {"compact_width": COMPACT_WIDTH, "compact_height": COMPACT_HEIGHT, "sections": dict(SECTIONS)}
