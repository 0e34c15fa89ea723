"""Feature visualisation and DeepDream against independent measurements: the objective is measured
again through ``net.activations`` (not read back from the optimiser), the frequency content through
an FFT, the adversarial flip through ``net.predict``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.visualize import high_frequency_energy


def small_net(act=nn.ReLU) -> cw.Network:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), act(), nn.Conv2d(8, 8, 3, padding=1), act(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return cw.Network(model, preprocess=T.Compose([T.Resize((32, 32)), T.ToTensor()]), labels=list("abcd"))


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()], hook_count(model))


def assert_untouched(model, before):
    state, training, grads, hooks = before
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    assert hook_count(model) == hooks and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("act", [nn.ReLU, nn.SiLU, nn.ReLU6])
def test_ascent_raises_the_unit_measured_independently(act):
    net = small_net(act)
    net.model.train()  # must come back in train mode
    before = snapshot(net.model)
    unit = cw.Unit("2", 5)
    viz = net.visualize(unit, steps=24, progress=False)
    after = net.activations(viz.input, ["2"])["2"][5].mean().item()
    noise = net.activations(torch.rand(3, 32, 32), ["2"])["2"][5].mean().item()
    assert after > noise + 0.1
    assert viz.objective[-1] > viz.objective[0]
    assert viz.image.size == (32, 32) and viz.input.shape == (3, 32, 32)
    assert viz.frames.dtype == np.uint8 and viz.frames.shape == (2, 32, 32, 3)
    assert_untouched(net.model, before)


def test_negative_lowers_the_unit_and_a_class_target_raises_its_logit():
    net = small_net()
    low = net.visualize(cw.Unit("2", 5), steps=16, negative=True, progress=False)
    high = net.visualize(cw.Unit("2", 5), steps=16, progress=False)
    measure = lambda v: net.activations(v.input, ["2"])["2"][5].mean().item()  # noqa: E731
    assert measure(low) < measure(high)
    cls = net.visualize("c", steps=16, progress=False)
    assert net.logits(cls.input)[2] > net.logits(torch.full((3, 32, 32), 0.5))[2]


def test_same_seed_same_picture_other_seed_other_picture():
    net = small_net()
    a = net.visualize(cw.Unit("0", 1), steps=6, progress=False, seed=3)
    b = net.visualize(cw.Unit("0", 1), steps=6, progress=False, seed=3)
    c = net.visualize(cw.Unit("0", 1), steps=6, progress=False, seed=4)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_fourier_has_less_high_frequency_energy_than_pixels():
    net = small_net()
    kw = dict(steps=24, progress=False, transforms="none", seed=0)
    fourier = net.visualize(cw.Unit("2", 3), param="fourier", **kw)
    pixel = net.visualize(cw.Unit("2", 3), param="pixel", **kw)
    to_t = lambda v: torch.from_numpy(np.array(v.image)).permute(2, 0, 1).float() / 255  # noqa: E731
    assert high_frequency_energy(to_t(fourier)) < high_frequency_energy(to_t(pixel))


def test_diversity_gives_different_pictures_and_callback_stops():
    net = small_net()
    viz = net.visualize(cw.Unit("2", 1), steps=8, n=3, diversity_weight=1.0, progress=False)
    assert len(viz.images) == 3
    assert not np.array_equal(np.asarray(viz.images[0]), np.asarray(viz.images[1]))
    seen = []
    stopped = net.visualize(cw.Unit("2", 1), steps=40, every=4, progress=False,
                            callback=lambda step, frame, value: seen.append(step) or len(seen) < 2)
    assert seen == [4, 8] and stopped.interrupted and len(stopped.objective) == 8


def test_start_image_and_pixel_param_reproduce_the_start():
    net = small_net()
    cat = cw.sample_image("cat")
    viz = net.visualize(0, steps=1, lr=1e-6, start=cat, param="pixel", transforms="none", progress=False)
    shown = net.display_image(cat).astype(int)
    assert np.abs(np.asarray(viz.image).astype(int) - shown).max() <= 2
    fourier = net.visualize(0, steps=1, lr=1e-6, start=cat, param="fourier", transforms="none", progress=False)
    assert np.abs(np.asarray(fourier.image).astype(int) - shown).max() <= 2


def test_dream_amplifies_its_layer():
    net = small_net()
    cat = cw.sample_image("cat")
    before = snapshot(net.model)
    dream = net.dream(cat, "2", octaves=2, steps=5, progress=False)
    energy = lambda x: net.activations(x, ["2"])["2"].pow(2).mean().item()  # noqa: E731
    assert energy(dream.input) > energy(cat)
    assert dream.image.size == (32, 32) and len(dream.frames) == 2
    assert_untouched(net.model, before)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda n: n.visualize(cw.Unit("2", 0), steps=0), cw.OptionError, "steps must be a positive integer"),
        (lambda n: n.visualize(cw.Unit("2", 0), param="pixels"), cw.OptionError, "did you mean 'pixel'"),
        (lambda n: n.visualize(cw.Unit("2", 0), transforms="all"), cw.OptionError, "transforms must be one of"),
        (lambda n: n.visualize(cw.Unit("2", 0), lr=-1), cw.OptionError, "lr must be a positive number"),
        (lambda n: n.visualize(0, n=2, diversity_weight=1.0), cw.OptionError, "diversity_weight needs"),
        (lambda n: n.visualize(cw.Unit("9", 0)), cw.LayerNotFoundError, "no explorable layer"),
        (lambda n: n.visualize(cw.Unit("2", 99)), cw.TargetError, "out of range"),
        (lambda n: n.dream(cw.sample_image("cat"), "nope"), cw.LayerNotFoundError, "no explorable layer"),
        (lambda n: n.dream(cw.sample_image("cat"), "2", octave_scale=0.5), cw.OptionError, "octave_scale"),
    ],
)
def test_bad_options_are_refused_and_leave_the_model(call, error, message):
    net = small_net()
    before = snapshot(net.model)
    with pytest.raises(error, match=message):
        call(net)
    assert_untouched(net.model, before)


@pytest.mark.slow
def test_default_model_goldfish_from_the_cat_is_an_adversarial_example():
    net = cw.load_default()
    cat = cw.sample_image("cat")
    adv = net.visualize("goldfish", steps=12, lr=0.02, start=cat, param="pixel", transforms="none", progress=False)
    assert net.predict(adv.input, k=1)[0].label.startswith("goldfish")
    change = np.abs(np.asarray(adv.image).astype(int) - net.display_image(cat).astype(int)).max() / 255
    assert change < 0.1  # still looks like the cat


@pytest.mark.slow
def test_default_model_deep_unit_beats_every_offline_photo():
    net = cw.load_default()
    unit = cw.Unit("blocks.5.3", 95)
    viz = net.visualize(unit, steps=48, progress=False)
    ours = net.activations(viz.input, [unit.layer])[unit.layer][unit.channel].mean().item()
    photos = cw.datasets.photos()
    best = max(net.activations(photos[i][0] if isinstance(photos[i], tuple) else photos[i], [unit.layer])[unit.layer][unit.channel].mean().item()
               for i in range(len(photos)))
    assert ours > best


def test_a_picture_optimised_at_its_own_size_is_measured_at_that_size():
    net = small_net()  # fully convolutional with global pooling: it runs at 48 x 48 natively
    viz = net.visualize(cw.Unit("2", 5), steps=16, size=48, progress=False)
    assert viz.image.size == (48, 48) and viz.input.shape == (3, 48, 48)
    shown = torch.from_numpy(np.array(viz.image)).permute(2, 0, 1).float() / 255
    assert torch.allclose(viz.input, shown, atol=1 / 255 + 1e-6)  # this preprocess does not normalise
    ours = net.activations(viz.input, ["2"])["2"][5].mean().item()
    noise = net.activations(torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0)), ["2"])["2"][5].mean().item()
    assert ours > noise + 0.1


def test_show_start_shows_the_starting_picture_before_the_model_runs_and_changes_nothing_else(monkeypatch):
    from cnn_widgets.engine.pictures import pixels_to_uint8
    from cnn_widgets.engine.visualize import ImageParam

    net = small_net()
    net.layers  # the structure at the input size is known: what follows runs the model only for the ascent
    events = []
    forward = net.model.forward
    monkeypatch.setattr(net.model, "forward", lambda x: (events.append("model"), forward(x))[1])
    seen = []

    def callback(step, frame, value):
        events.append(f"frame {step}")
        seen.append((step, frame.copy(), value))

    # 48 px is not the input size: whether the model runs there is found out after the first frame
    kw = dict(steps=6, size=48, every=2, progress=False, seed=1)
    shown = net.visualize(cw.Unit("2", 5), callback=callback, show_start=True, **kw)
    assert events[0] == "frame 0" and events[1] == "model"
    assert [s for s, _, _ in seen] == [0, 2, 4, 6] and np.isnan(seen[0][2])
    start = ImageParam(1, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.testing.assert_array_equal(seen[0][1], pixels_to_uint8(start()[0]))
    plain = net.visualize(cw.Unit("2", 5), callback=lambda *a: None, **kw)  # the same run without it
    np.testing.assert_array_equal(np.asarray(shown.image), np.asarray(plain.image))
    np.testing.assert_array_equal(shown.frames, plain.frames)  # frame 0 is shown, not kept
    assert shown.objective == plain.objective and len(shown.frames) == 3
    assert torch.equal(shown.input, plain.input) and shown.input.shape == (3, 48, 48)

    stopped = net.visualize(cw.Unit("2", 5), callback=lambda *a: False, show_start=True, **kw)
    assert stopped.interrupted and stopped.objective == [] and len(stopped.frames) == 0
    np.testing.assert_array_equal(np.asarray(stopped.image), seen[0][1])

    cat = cw.sample_image("cat")
    firsts = []
    net.visualize(0, steps=1, start=cat, progress=False, show_start=True,
                  callback=lambda step, frame, value: firsts.append(frame) if step == 0 else None)
    assert np.abs(firsts[0].astype(int) - net.display_image(cat).astype(int)).max() <= 2  # the start image

    dreams = []
    dream = net.dream(cat, "2", octaves=2, steps=2, progress=False, show_start=True,
                      callback=lambda step, frame, value: dreams.append((step, frame)))
    assert [s for s, _ in dreams] == [0, 1, 2] and len(dream.frames) == 2
    assert np.abs(dreams[0][1].astype(int) - net.display_image(cat).astype(int)).max() <= 1  # the image itself


def flat28_net() -> cw.Network:
    """A 28x28 one-channel model whose flatten + linear head runs at that size only."""
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 10)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return cw.Network(model, preprocess=T.Compose([T.Grayscale(), T.Resize((28, 28)), T.ToTensor(),
                                                   T.Normalize((0.5,), (0.5,))]))


@pytest.mark.parametrize("build, layer", [(cw.digits_cnn, None), (flat28_net, "3")])
def test_models_that_run_at_one_size_visualize_and_dream_at_that_size(build, layer):
    net = build()
    side = net.input_size[0]
    with pytest.raises(cw.CnnWidgetsError, match="cannot run on an input"):  # the premise: one input size only
        net.prepare(torch.rand(net.input_channels, side + 4, side + 4))
    layer = layer or [entry.name for entry in net.layers if entry.kind == "conv"][-1]
    before = snapshot(net.model)
    start = cw.sample_image("cat")
    unit = cw.Unit(layer, 1)
    mean = lambda x: net.activations(x, [layer])[layer][1].mean().item()  # noqa: E731
    viz = net.visualize(unit, steps=24, start=start, seed=3, progress=False)
    picture = np.asarray(viz.image)
    assert viz.image.size == (side, side) and np.isfinite(picture).all()
    assert tuple(viz.input.shape) == (net.input_channels, side, side) and torch.isfinite(viz.input).all()
    assert mean(viz.image) > mean(start) + 1e-3
    label = net.visualize(0, steps=8, progress=False)  # a class: the whole model runs, head included
    assert label.image.size == (side, side)
    dream = net.dream(start, layer, octaves=3, steps=3, progress=False)
    energy = lambda x: net.activations(x, [layer])[layer].pow(2).mean().item()  # noqa: E731
    assert dream.image.size == (side, side) and energy(dream.image) > energy(start)
    assert_untouched(net.model, before)
