"""Progress of an atlas build, stage by stage, for a caller that shows it (the Explorer's Atlas tab).

``callback(stage, done, total)`` is called after each piece of work of a stage (a batch of images
sampled, an image cut into patches, an optimisation step of the icons); an exception it raises
stops the build there (every hook and flag is restored by the stage's own ``with`` blocks).
"""

from __future__ import annotations

from collections.abc import Callable

StageCallback = Callable[[str, int, int], None]


class StageBar:
    """A tqdm bar that also reports each update to ``callback`` as ``(stage, done, total)``."""

    def __init__(self, bar, callback: StageCallback | None, stage: str, total: int):
        self.bar, self.callback, self.stage, self.total, self.done = bar, callback, stage, total, 0

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        self.done += n
        if self.callback is not None:
            self.callback(self.stage, self.done, self.total)

    def close(self) -> None:
        self.bar.close()
