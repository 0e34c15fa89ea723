"""``Explorer.save_figure``. Its own module, importing the figure code only when called, so that
importing ``cnn_widgets.export.figures`` first (plotting.py does) and the widgets first both work."""

from __future__ import annotations

from pathlib import Path


class FigureMixin:
    """``Explorer.save_figure``: what a panel shows now, as a figure for slides."""

    #: What this part uses of the Explorer's other parts (read, called or set); tests/widgets/test_parts.py checks it
    USES: tuple[str, ...] = ('compute',)

    def save_figure(self, panel: str, path: str | Path, scale: int = 2) -> dict:
        """Save ``panel`` (``"predictions"``, ``"saliency"``, ``"occlusion"``, ``"feature_maps"``,
        ``"tree"``, or ``"all"``) as a PNG (``scale`` x pixels, 2 for projectors) or SVG / PDF (text,
        bars and frames as vectors), with its title and caption, drawn from the current state.

        Pending computations finish first, so the figure matches the settings. A bad panel name
        raises ``OptionError`` listing the choices. Returns ``{"path", "size": (width, height) px,
        "scale", "regions": {picture: (x, y, w, h) px}}``.
        """
        from ..engine.checks import check_choice, check_int
        from .figures import PANELS, ExplorerState, save_panel_figure
        from .sheet import figure_path

        check_choice("panel", panel, PANELS)  # every argument checked before anything is computed
        check_int("scale", scale, 1, 8)
        figure_path(path)
        self.compute()
        return save_panel_figure(ExplorerState(self), panel, path, scale)
