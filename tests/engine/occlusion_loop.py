"""Occlusion by hand: the independent reference the occlusion tests compare against."""

from __future__ import annotations

import numpy as np
import torch


def loop_reference(f, x, fill_image, window, stride):
    """One forward per window, one Python loop per pixel: (grid, heat map).

    Windows step by ``stride`` while they fit, plus one more, clipped at the border, when the steps
    miss it (captum's rule).
    """

    def corners(n):
        starts = list(range(0, n - window + 1, stride))
        return starts + [starts[-1] + stride] if starts[-1] + window < n else starts

    tops, lefts = corners(x.shape[1]), corners(x.shape[2])
    base = f(x)
    grid = np.zeros((len(tops), len(lefts)))
    total = np.zeros(x.shape[1:])
    count = np.zeros(x.shape[1:])
    for i, t in enumerate(tops):
        for j, l in enumerate(lefts):
            occluded = x.clone()
            occluded[:, t : t + window, l : l + window] = fill_image[:, t : t + window, l : l + window]
            grid[i, j] = base - f(occluded)
            for y in range(t, min(t + window, x.shape[1])):
                for z in range(l, min(l + window, x.shape[2])):
                    total[y, z] += grid[i, j]
                    count[y, z] += 1
    heat = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return torch.from_numpy(grid), torch.from_numpy(heat)
