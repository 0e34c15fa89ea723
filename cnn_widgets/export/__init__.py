"""Static export and figures: an Explorer or an executed notebook as one offline HTML page
(:func:`export_html`), and any panel as a PNG / SVG figure (``explorer.save_figure``).

Imports run one way: this package reads widgets' state and the engine; the widgets import only
``figures`` (for ``Explorer.save_figure``), never the other way round.
"""

from .html_export import export_html

__all__ = ["export_html"]
