"""What the front end sends besides trait changes and the runner's recompute / cancel: a dropped image
file, a click on a scanned image, a click on an atlas cell, a click on the image (a unit's position)."""

from __future__ import annotations

import io

from traitlets import TraitError

from ..engine import CnnWidgetsError, to_rgb_image

CUSTOM_IMAGE = "custom"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class ImageMessages:
    """Mixed into the Explorer: loads images from front-end messages (reports problems as ``error``)."""

    #: What this part uses of the Explorer's other parts (read, called or set); tests/widgets/test_parts.py checks it
    USES: tuple[str, ...] = ('scan', 'scan_index', '_next_scan_index', '_set_image', '_on_atlas_message', '_on_unit_message', '_report')

    def _on_custom_message(self, _widget, content, buffers):
        if not isinstance(content, dict):
            return
        if content.get("type") == "image" and buffers:
            self.load_image_bytes(bytes(buffers[0]), name=str(content.get("name", "uploaded image")))
        elif content.get("type") == "atlas":
            self._on_atlas_message(content)
        elif content.get("type") == "unit":  # a click on the image picks a unit of the selected layer (unit_view.py)
            self._on_unit_message(content)
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
