"""Scans on several CPU threads: the outputs are kept to the end of the pass and folded by worker
threads, and must give what the one-thread scan (each output folded the moment it is made) gives.

Oracles: float64 models with small integer weights (every activation an exact integer, so any two
correct scans agree bit for bit), activations copied by test-local hooks the moment they are made,
and a pure-Python top-k merge.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count, inference_state
from cnn_widgets.engine.scan import batch, scan, state
from cnn_widgets.engine.scan.state import empty_layer_state


@pytest.fixture()
def threads():
    """Run the test body with the given torch thread count (restored afterwards)."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


class AddInPlace(nn.Module):
    """ResNet's ``out += identity``: changes the output of the layer before it in place."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        out = self.conv(x)
        out += x
        return out


def integer_model() -> cw.Network:
    g = torch.Generator().manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # "0": changed in place by the ReLU after it
        nn.ReLU(inplace=True),
        AddInPlace(),  # "2.conv": changed in place by the add
        nn.ReLU(),
        nn.Conv2d(4, 6, 3),  # "4": read by nothing in place
    ).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randint(-1, 2, m.weight.shape, generator=g).double())
                m.bias.copy_(torch.randint(-3, 2, m.bias.shape, generator=g).double())
        model[0].bias[0] = -40.0  # a channel negative everywhere: the ReLU after it zeroes its maxima
        model[2].conv.bias[1] = -40.0  # and one that ``out += x`` shifts
    return cw.Network(model, preprocess=T.Compose([T.Resize((9, 9)), T.ToTensor()]))


def integer_images(n=13):
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 3, (3, 9, 9), generator=g).double() for _ in range(n)]
    images[4] = images[2].clone()  # ties across images
    return images


LAYERS = ["0", "2.conv", "4"]


def copied_outputs(model, x) -> dict[str, np.ndarray]:
    """Each layer's output on ``x``, copied the moment it is made (before any in-place change)."""
    modules = dict(model.named_modules())
    seen = {}

    def copier(name):
        def hook(module, inputs, output):  # returns None: a hook's return value would replace the output
            seen[name] = output.detach().clone()

        return hook

    handles = [modules[n].register_forward_hook(copier(n)) for n in LAYERS]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {n: seen[n].numpy() for n in LAYERS}


def test_an_output_changed_in_place_later_is_folded_when_made(threads):
    """Layers "0" (an in-place ReLU follows) and "2.conv" (``out += x`` follows) hold negative values
    that the later operations overwrite; kept to the end of the pass, the scan would see the
    changed tensors. It must see the outputs as made: top-k, maxima and codes equal the copies."""
    net = integer_model()
    images = integer_images()
    maps = [copied_outputs(net.model, x[None]) for x in images]
    threads(2)
    result = scan(net, images, layers=LAYERS, k=4, batch_size=5, progress=False)
    assert hook_count(net.model) == 0
    for name in LAYERS:
        m = np.stack([mp[name][0] for mp in maps])  # [N, C, H, W]
        flat = m.reshape(m.shape[0], m.shape[1], -1)
        maxima = flat.max(axis=2)
        if name != "4":  # the oracle must differ from what the later in-place operations leave
            assert (maxima < 0).any()
        np.testing.assert_array_equal(result.stats(name).max, maxima.max(axis=0))
        np.testing.assert_array_equal(result.codes(name), flat.mean(axis=2))
        table = result.top(name)
        for c in range(m.shape[1]):
            order = sorted(range(len(images)), key=lambda i: (-maxima[i, c], i))[:4]
            assert table["indices"][c].tolist() == order, (name, c)

    # "2.conv", which ``out += x`` changes, is captured with the rest of the pass reading a copy (the
    # traced pass marked it: LayerInfo.changed_later), so the scan's own check finds only the layer
    # the in-place ReLU overwrites, and remembers it for later batches
    assert net.layer("2.conv").changed_later and not net.layer("0").changed_later
    changed: set[str] = set()
    empty = {n: empty_layer_state(net.layer(n).shape[0], 4, torch.float64) for n in LAYERS}
    x = torch.stack(images[:5])
    with inference_state(net.model), torch.no_grad():
        batch.fold_batch(net, LAYERS, empty, 4, x, 0, changed)
    assert changed == {"0"}


def test_thread_counts_and_the_kept_budget_do_not_change_a_bit(threads, monkeypatch):
    """One thread (every output folded when made), two and three (kept, folded by workers, large
    outputs in row blocks), and a zero budget (nothing kept): the same scan, bit for bit."""
    net = integer_model()
    images = integer_images()
    threads(1)
    one = scan(net, images, layers=LAYERS, k=3, batch_size=4, progress=False)
    runs = []
    monkeypatch.setattr(batch, "PARALLEL_ELEMENTS", 1)  # every output cut into row blocks
    for count in (2, 3):
        threads(count)
        runs.append(scan(net, images, layers=LAYERS, k=3, batch_size=4, progress=False))
    monkeypatch.setattr(batch, "KEPT_BYTES", 0)
    runs.append(scan(net, images, layers=LAYERS, k=3, batch_size=4, progress=False))
    for other in runs:
        for name in LAYERS:
            for key, value in one.top(name).items():
                np.testing.assert_array_equal(other.top(name)[key], value)
            for key in ("mean", "max", "fraction_zero", "fraction_images_firing"):
                np.testing.assert_array_equal(getattr(other.stats(name), key), getattr(one.stats(name), key))
            np.testing.assert_array_equal(other.codes(name), one.codes(name))


def test_an_overflow_found_after_the_pass_leaves_nothing_behind(threads):
    """Finite images whose activations overflow: with kept outputs the error is found by a worker
    after the pass; it reaches the caller as the same error, and no hook is left."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    with torch.no_grad():
        model[0].weight.fill_(1.0)  # 27 terms of 3e38: +inf everywhere
    net = cw.Network(model, preprocess=T.Compose([T.Resize((12, 12)), T.ToTensor()]))
    threads(2)
    with pytest.raises(cw.NonFiniteError, match="NaN or infinite"):
        scan(net, [torch.full((3, 12, 12), 3e38)] * 3, layers=["1", "2"], progress=False)
    assert hook_count(net.model) == 0


def test_non_zero_counts_are_exact_past_float16_integers():
    """float16 holds every integer only up to 2048: a 3001-position map's count must still be exact."""
    x = torch.ones(2, 3, 3001, dtype=torch.float16)
    x[0, 1, :7] = 0
    x[1, 2, 100:] = -0.0
    _, _, nonzero, _ = state.row_statistics(x, positions=False)
    assert nonzero.tolist() == [[3001, 2994, 3001], [3001, 3001, 100]]


def python_merge(kept_rows, batch_values, start, k):
    """Per channel: the kept (value, index) entries and this batch's, value descending, index ascending."""
    merged = []
    for c, kept in enumerate(kept_rows):
        entries = list(kept) + [(float(v), start + i) for i, v in enumerate(batch_values[:, c])]
        entries.sort(key=lambda e: (-e[0], e[1]))
        merged.append(entries[:k])
    return merged


@pytest.mark.parametrize("seed", range(6))
def test_merge_of_entering_candidates_equals_a_python_merge(seed):
    """merge_top takes only the candidates that beat a channel's k-th value, padded per channel;
    over batches with ties (values drawn from a few levels), it must equal merging everything."""
    rng = random.Random(seed)
    channels, k, size = 7, 4, 5
    old = empty_layer_state(channels, k, torch.float32)
    reference = [[] for _ in range(channels)]
    for step in range(6):
        values = torch.tensor([[rng.choice([0.0, 1.0, 2.0, 2.5, -1.0]) for _ in range(channels)] for _ in range(size)])
        kth = old.top_values[:, -1]
        channel, image = (values > kth[None, :]).T.nonzero().unbind(1)
        positions = torch.randint(0, 12, (len(channel),))
        top = state.merge_top(old, channel, image, values[image, channel], positions // 4, positions % 4, step * size, k)
        old = state.LayerState(*top, code_sum=old.code_sum, max=old.max, zeros=old.zeros, firing=old.firing)
        reference = python_merge(reference, values.numpy(), step * size, k)
        for c in range(channels):
            got = [(float(v), int(i)) for v, i in zip(old.top_values[c], old.top_index[c]) if i >= 0]
            assert got == reference[c], (seed, step, c)
            assert all(math.isinf(v) for v, i in zip(old.top_values[c].tolist(), old.top_index[c].tolist()) if i < 0)


def test_a_scan_under_inference_mode_folds_every_output_when_made(threads):
    """Tensors made under ``torch.inference_mode`` keep no version counter, so nothing can be kept
    safely: every output is folded when made, and the scan equals the one-thread scan."""
    net = integer_model()
    images = integer_images()
    threads(1)
    one = scan(net, images, layers=LAYERS, k=3, batch_size=4, progress=False)
    threads(2)
    with torch.inference_mode():
        inside = scan(net, images, layers=LAYERS, k=3, batch_size=4, progress=False)
    for name in LAYERS:
        np.testing.assert_array_equal(inside.top(name)["indices"], one.top(name)["indices"])
        np.testing.assert_array_equal(inside.codes(name), one.codes(name))
        np.testing.assert_array_equal(inside.stats(name).max, one.stats(name).max)
