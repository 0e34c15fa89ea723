"""The top-5 classes of the image."""

from __future__ import annotations

from typing import TypedDict

from .base import Panel

TOP_K = 5


class PredictionEntry(TypedDict):
    """One item of the ``predictions`` trait (best first)."""

    label: str  # the class name
    probability: float  # softmax probability
    index: int  # class index (a valid ``target``)
    logit: float


class PredictionsPanel(Panel):
    name = "predictions"
    label = "predictions"

    def compute(self, explorer) -> dict:
        predictions = explorer.net.predict(explorer.image, k=TOP_K)
        entries: list[PredictionEntry] = [
            {"label": p.label, "probability": p.probability, "index": p.index, "logit": p.logit} for p in predictions
        ]
        return {"predictions": entries}
