"""Shared by the scan tests: the comparison of two scans table by table, and a lean local Ray cluster."""

from __future__ import annotations

import contextlib
import sys

import numpy as np
import torch
from torch import nn
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine.scan import Scan


def integer_net() -> cw.Network:
    """float64 CNN with integer weights on integer images: exact activations (no rounding, whatever
    the batch or the process) and many ties."""
    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3), nn.ReLU(),
                          nn.AdaptiveMaxPool2d(1), nn.Flatten()).double()
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randint(-1, 2, m.weight.shape, generator=g).double())
                m.bias.copy_(torch.randint(-1, 2, m.bias.shape, generator=g).double())
    return cw.Network(model, preprocess=T.Compose([T.Resize((10, 10)), T.ToTensor()]))


def integer_images(n: int = 23, seed: int = 0, ties: bool = True) -> list[torch.Tensor]:
    """``n`` integer images ``[3, 10, 10]`` (float64); with ``ties``, equal images (3, 7, 15) and an
    all-zero one (5) make ties across images and inside one map."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 3, (3, 10, 10), generator=g).double() for _ in range(n)]
    if ties and n > 15:
        images[7] = images[15] = images[3].clone()
        images[5] = torch.zeros(3, 10, 10, dtype=torch.float64)
    return images


def assert_same_scan(a: Scan, b: Scan, exact_mean: bool = True, codes_rtol: float = 0.0) -> None:
    """Every table of two scans equal: top-k indices, positions and values, statistics, codes, labels.

    ``exact_mean=False`` allows 1e-13 in the means (a float64 sum in another order); ``codes_rtol``
    a relative tolerance in the codes (computed in other processes).
    """
    assert a.layers == b.layers and a.count == b.count and a.k == b.k and a.total == b.total
    for name in a.layers:
        ta, tb = a.top(name), b.top(name)
        for key in ("indices", "positions", "values"):
            np.testing.assert_array_equal(ta[key], tb[key], err_msg=f"{name} {key}")
        sa, sb = a.stats(name), b.stats(name)
        for key in ("mean", "max", "fraction_zero", "fraction_images_firing"):
            if key == "mean" and not exact_mean:
                np.testing.assert_allclose(sa.mean, sb.mean, rtol=1e-13, atol=1e-13)
            else:
                np.testing.assert_array_equal(getattr(sa, key), getattr(sb, key), err_msg=f"{name} {key}")
        if codes_rtol:
            np.testing.assert_allclose(a.codes(name), b.codes(name), rtol=codes_rtol, atol=codes_rtol / 10)
        else:
            np.testing.assert_array_equal(a.codes(name), b.codes(name), err_msg=f"{name} codes")
    la, lb = a.labels, b.labels
    assert (la is None) == (lb is None)
    if la is not None:
        np.testing.assert_array_equal(la, lb)


@contextlib.contextmanager
def ray_cluster(module_name: str):
    """A local 2-CPU Ray cluster for one test module, started lean (no autoscaler monitor, no log
    monitor, no dashboard: on a loaded machine the raylet's fixed 30 s wait for its agents otherwise
    times out while they are still importing). The module is sent to workers by value (they cannot
    import test modules), so its datasets can be defined there."""
    import ray
    from ray import cloudpickle  # Ray's own copy pickles what it sends
    from ray.cluster_utils import Cluster

    cloudpickle.register_pickle_by_value(sys.modules[module_name])
    for attempt in range(3):  # a start-up can still time out on a machine busy with other work
        try:
            head = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 2, "include_dashboard": False, "no_monitor": True, "include_log_monitor": False})
            break
        except Exception:
            if attempt == 2:
                raise
    ray.init(address=head.address, include_dashboard=False, log_to_driver=False)
    try:
        yield head
    finally:
        ray.shutdown()
        head.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[module_name])
