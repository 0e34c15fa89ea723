"""The image as the network sees it (after resizing and cropping), drawn under saliency and occlusion."""

from __future__ import annotations

from .base import Panel


class ImagePanel(Panel):
    name = "image"
    label = "image"

    def compute(self, explorer) -> dict:
        # image_data: uint8 [H, W, 3] at the network's input size
        return {"image_data": explorer.net.display_image(explorer.image)}
