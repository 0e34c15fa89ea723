"""Incremental occlusion (Krypton, Nakandala, Kumar & Papakonstantinou, SIGMOD 2019).

``tracer``: the model's ``torch.fx`` graph, traced without disturbing other threads; ``graph``:
that graph with each op labelled; ``regions``: patch arithmetic (growth
through kernels and strides, windows read from cached maps, pastes); ``executor``: one batch of
occluded copies recomputed only where the patches reach.
"""

from .executor import CLEAN, IncrementalRunner, plan_for
from .regions import Patch

__all__ = ["CLEAN", "IncrementalRunner", "Patch", "plan_for"]
