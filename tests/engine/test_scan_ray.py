"""Scans on Ray (``backend="ray"``): identical to a local scan of the same images with the same batch
size, a worker killed mid-scan (its batches redone, none counted twice), ``ray.data`` datasets,
Ctrl-C and resume, the options, and the package without Ray. Workers SIGKILLed while starting or
at random, workers that keep dying, and a batch that kills every worker are in
``test_scan_ray_faults.py``.

One local Ray cluster (2 CPUs) serves the whole module. It is started lean (no autoscaler monitor,
no log monitor, no dashboard): on a loaded machine the raylet's fixed 30 s wait for its agents
otherwise times out while they are still importing.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine import datasets
from cnn_widgets.engine.errors import OptionError
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.scan import Scan, model_fingerprint, scan
from scan_checks import assert_same_scan, integer_images, integer_net, ray_cluster

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(__name__) as head:
        yield head


# ------------------------------------------------------------------------------------------ helpers
def small_cnn(dtype=torch.float32):
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(12, 5),
    ).to(dtype)
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return cw.Network(model, preprocess=T.Compose([T.Resize((32, 32)), T.ToTensor()]))




class Photos(Dataset):
    """Photos with labels."""

    def __init__(self, n=26):
        self.photos = datasets.augmented_photos(n=n, seed=5, size=48)

    def __len__(self):
        return len(self.photos)

    def __getitem__(self, i):
        return self.photos[i], self.photos.targets[i]


def ray_scan(net, images, **kw):
    kw.setdefault("progress", False)
    return scan(net, images, backend="ray", **kw)


def local_scan(net, images, **kw):
    kw.setdefault("progress", False)
    return scan(net, images, **kw)



def model_state(net):
    return ([m.training for m in net.model.modules()], [p.requires_grad for p in net.model.parameters()],
            model_fingerprint(net.model), hook_count(net.model))


# ------------------------------------------------------------------------------------------ tests
def test_ray_scan_equals_local_scan_and_leaves_the_model_alone(cluster, tmp_path):
    net = small_cnn()
    net.model.train()  # odd flags: the driver's model must come back exactly as it was
    net.model[4].weight.requires_grad_(False)
    before = model_state(net)
    local = local_scan(net, Photos(), k=5, batch_size=4)
    assert model_state(net) == before
    distributed = ray_scan(net, Photos(), k=5, batch_size=4, workers=2, save_to=tmp_path / "s.pt")
    assert model_state(net) == before
    assert isinstance(distributed, Scan) and distributed.complete and not distributed.interrupted
    assert distributed.batch_size == 4
    assert_same_scan(distributed, local, codes_rtol=1e-6)
    # the same Scan: its queries and files work as for a local one
    unit = cw.Unit("5", 3)
    got, want = distributed.top_images(unit, method=None), local.top_images(unit, method=None)
    assert [t.index for t in got] == [t.index for t in want] and [t.value for t in got] == [t.value for t in want]
    np.testing.assert_array_equal(distributed.embedding("5"), local.embedding("5"))
    assert distributed.dead_channels("2") == local.dead_channels("2")
    assert_same_scan(Scan.load(tmp_path / "s.pt", net, images=Photos()), local, codes_rtol=1e-6)


class DyingImages(Dataset):
    """Images; the worker process loading image ``die_at`` dies, once (a marker file remembers)."""

    def __init__(self, images, die_at, marker):
        self.images, self.die_at, self.marker = images, die_at, marker

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.die_at and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)  # a worker killed mid-batch: no exception, no goodbye
        return self.images[i]


def test_a_worker_killed_mid_scan_loses_nothing_counts_nothing_twice_and_ties_match(cluster):
    """Exact integer activations with ties inside maps and across images, an uneven last batch
    (23 images, batch 3), and the worker scanning images 12..14 killed half-way."""
    net, images = integer_net(), integer_images()
    # not tmp_path: concurrent pytest runs on a shared machine prune each other's numbered tmp dirs
    with tempfile.TemporaryDirectory(prefix="cw-ray-") as folder:
        marker = Path(folder) / "died"
        distributed = ray_scan(net, DyingImages(images, 13, str(marker)), k=6, batch_size=3, workers=2)
        assert marker.exists()  # a worker really died
    assert distributed.complete and distributed.count == 23
    # equal counts, sums and top-k: no batch was lost or folded twice
    assert_same_scan(distributed, local_scan(net, images, k=6, batch_size=3), codes_rtol=1e-6)
    values = distributed.top("4")["values"]
    assert sum(len(row) - len(set(row)) for row in values.tolist()) > 0  # ties really occur


def test_results_returned_newest_first_still_cover_every_image(cluster, monkeypatch):
    """Ray's ``wait`` may hand back any finished batch first. The adversary here waits for every
    batch in flight and returns the newest: the window (2 * workers) fills with results that wait
    for the oldest, all commit at once, and nothing is left in flight. The scan must go on sending
    batches, not stop there as a partial scan (it did: 3,648 of 20,000 images in the benchmark)."""
    import ray

    real_wait = ray.wait
    calls = []

    def newest_first(refs, num_returns=1, **kw):
        done, _ = real_wait(refs, num_returns=len(refs), **kw)
        calls.append(len(done))
        return [done[-1]], [r for r in refs if r is not done[-1]]

    monkeypatch.setattr(ray, "wait", newest_first)
    net, images = integer_net(), integer_images()
    distributed = ray_scan(net, images, k=6, batch_size=2, workers=2)
    assert max(calls) >= 4  # the window really was full of finished batches at once
    assert distributed.complete and distributed.count == 23
    assert_same_scan(distributed, local_scan(net, images, k=6, batch_size=2), codes_rtol=1e-6)


def test_interrupt_and_resume_on_ray_equal_one_local_scan(cluster, tmp_path, monkeypatch):
    from cnn_widgets.engine.scan import ray_driver

    net = small_cnn()
    merge, calls = ray_driver.merge_parts, {"n": 0}

    def interrupted_merge(result, parts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C on the driver while batches are in flight
        return merge(result, parts)

    monkeypatch.setattr(ray_driver, "merge_parts", interrupted_merge)
    with pytest.warns(UserWarning, match="interrupted"):
        partial = ray_scan(net, Photos(), k=5, batch_size=4, workers=2, save_to=tmp_path / "p.pt")
    monkeypatch.setattr(ray_driver, "merge_parts", merge)
    assert partial.interrupted and partial.count == 8  # two whole batches, in order
    resumed = ray_scan(net, Photos(), resume=tmp_path / "p.pt", workers=2)
    assert resumed.complete and not resumed.interrupted
    assert_same_scan(resumed, local_scan(net, Photos(), k=5, batch_size=4), codes_rtol=1e-6)


def test_a_ray_dataset_of_image_files(cluster, tmp_path):
    photos = datasets.augmented_photos(n=11, seed=2, size=40)
    for i in range(len(photos)):
        photos[i].save(tmp_path / f"img{i:02d}.png")
    net = small_cnn()
    dataset = ray.data.read_images(str(tmp_path), include_paths=True, mode="RGB")
    distributed = ray_scan(net, dataset, k=4, batch_size=4, workers=1)
    paths = [distributed._source.item(i) for i in range(distributed.count)]
    assert sorted(Path(p).name for p in paths) == [f"img{i:02d}.png" for i in range(11)]
    # the same images, in the order Ray read them, scanned locally
    assert_same_scan(distributed, local_scan(net, paths, k=4, batch_size=4), codes_rtol=1e-6)
    assert distributed.top_images(cw.Unit("5", 0), method=None)[0].crop is not None
    distributed.save(tmp_path / "r.pt")
    again = Scan.load(tmp_path / "r.pt", net)  # the paths were recorded: no images needed
    assert again.image(3) == paths[3]
    assert [t.index for t in again.top_images(cw.Unit("5", 0), method=None)] == \
        [t.index for t in distributed.top_images(cw.Unit("5", 0), method=None)]


def test_bad_options_raise_option_error():
    net = small_cnn()
    images = [torch.zeros(3, 32, 32)] * 2
    bad = [
        dict(backend="spark"),
        dict(backend="ray", workers=0),
        dict(backend="ray", workers=1.5),
        dict(backend="ray", resources=4),
        dict(backend="ray", resources={"gpus": 1}),
        dict(backend="ray", resources={"num_gpus": -1}),
        dict(backend="ray", resources={"resources": {"tpu": "many"}}),
        dict(workers=2),  # a Ray option on a local scan
        dict(resources={"num_cpus": 1}),
    ]
    for options in bad:
        with pytest.raises(OptionError):
            scan(net, images, progress=False, **options)


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(ImportError, match=re.escape("pip install cnn_widgets[ray]")):
        scan(small_cnn(), [torch.zeros(3, 32, 32)], backend="ray", progress=False)


def test_nothing_but_the_ray_backend_imports_ray():
    root = Path(cw.__file__).parent
    importing = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
                 if re.search(r"^\s*(import ray|from ray)\b", p.read_text(), re.M)]
    assert importing == ["engine/scan/ray_backend.py"]
    backend = (root / "engine/scan/ray_backend.py").read_text()
    assert not re.search(r"^(import ray|from ray)", backend, re.M)  # lazily, inside functions only


def test_resources_the_cluster_cannot_give_are_refused_before_starting(cluster):
    from cnn_widgets.engine.scan import ScanError

    with pytest.raises(ScanError, match="num_gpus=1 but the Ray cluster has 0 GPUs"):
        ray_scan(small_cnn(), [torch.zeros(3, 32, 32)] * 2, resources={"num_gpus": 1})
