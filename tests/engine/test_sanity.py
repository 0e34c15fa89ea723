"""net.sanity_check: model-parameter randomisation (Adebayo et al. 2018) on copies, and its measures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage, stats
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.errors import OptionError
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.sanity import default_stages, randomized_copy, similarity


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/engine/conftest.py


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.blocks = nn.Sequential(nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()),
                                    nn.ReLU(),
                                    nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.blocks(torch.relu(self.bn(self.stem(x))))
        return self.head(self.pool(x).flatten(1))


def small_net(seed=0):
    torch.manual_seed(seed)
    model = Small().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    return cw.Network(model, preprocess=lambda img: torch.zeros(3, 12, 12), labels=list("abcd"))


def image(seed=1):
    return torch.randn(3, 12, 12, generator=torch.Generator().manual_seed(seed))


def fingerprint(model):
    return ([(k, v.detach().clone()) for k, v in model.state_dict().items()],
            [(p.requires_grad, p.grad) for p in model.parameters()], model.training, hook_count(model))


def assert_same(model, before):
    after = fingerprint(model)
    assert [k for k, _ in after[0]] == [k for k, _ in before[0]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(after[0], before[0]))
    assert after[1:] == before[1:]


def test_default_stages_are_top_down_with_sequentials_split():
    net = small_net()
    assert default_stages(net.model) == ["head", "blocks.2", "blocks.0", "bn", "stem"]  # blocks.1 (a ReLU) has no weights


def test_stages_follow_the_paper_and_the_model_is_never_touched():
    net = small_net()
    x = image()
    before = fingerprint(net.model)
    result = net.sanity_check(x, methods=["gradient", "guided_backprop", "grad_cam"], progress=False)
    assert_same(net.model, before)
    stages = ["head", "blocks.2", "blocks.0", "bn", "stem"]
    assert result.stages == ["original", *stages] and result.cascade
    top = int(net.logits(x).argmax())
    assert result.target.index == top
    for i in range(len(result.stages)):  # each stage equals saliency on its own randomised copy
        other = cw.Network(randomized_copy(net.model, stages[:i]), preprocess=net.preprocess, labels=list("abcd"))
        for method in result.methods:
            expected = other.saliency(x, top, method=method)
            expected = expected.sum(0) if expected.dim() == 3 else expected
            torch.testing.assert_close(result.signed[method][i], expected.float(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(result.maps[method][i], expected.float().abs(), rtol=1e-5, atol=1e-6)
    for method in result.methods:
        assert result.similarity(method)[0] == pytest.approx(1.0)
        assert result.similarity(method, "ssim")[0] == pytest.approx(1.0)


def test_a_randomised_copy_changes_exactly_its_stages_as_pytorch_initialises_them():
    net = small_net()
    before = fingerprint(net.model)
    clone = randomized_copy(net.model, ["head", "blocks.2"], seed=3)
    assert_same(net.model, before)
    original = dict(net.model.named_parameters())
    for name, p in clone.named_parameters():
        changed = not torch.equal(p, original[name])
        assert changed == name.startswith(("head.", "blocks.2.")), name
    # PyTorch's default initialisation (kaiming_uniform with a = sqrt(5)): |w| <= 1 / sqrt(fan_in)
    assert clone.head.weight.abs().max() <= 1 / math.sqrt(8) + 1e-7
    assert clone.blocks[2][0].weight.abs().max() <= 1 / math.sqrt(8 * 9) + 1e-7
    again = randomized_copy(net.model, ["head", "blocks.2"], seed=3)
    assert all(torch.equal(a, b) for a, b in zip(clone.parameters(), again.parameters()))  # seeded
    # a batch norm's running statistics are reset with it
    bn = randomized_copy(net.model, ["bn"]).bn
    assert torch.equal(bn.running_mean, torch.zeros(6)) and torch.equal(bn.running_var, torch.ones(6))


def test_independent_randomisation_changes_one_stage_at_a_time():
    net = small_net()
    x = image(2)
    result = net.sanity_check(x, 1, methods=["gradient"], cascade=False, stages=["head", "stem"], seed=5,
                              progress=False)
    assert result.stages == ["original", "head", "stem"] and not result.cascade
    for i, stage in enumerate(["head", "stem"]):
        other = cw.Network(randomized_copy(net.model, [stage], seed=5 + i), preprocess=net.preprocess)
        torch.testing.assert_close(result.signed["gradient"][i + 1], other.saliency(x, 1, method="gradient").sum(0),
                                   rtol=1e-5, atol=1e-6)


def test_the_same_call_gives_the_same_maps_and_a_callback_sees_each_stage():
    net = small_net()
    seen = []
    a = net.sanity_check(image(), methods=["gradient"], progress=False,
                         callback=lambda done, total, partial: seen.append((done, total, list(partial.stages))))
    b = net.sanity_check(image(), methods=["gradient"], progress=False)
    assert torch.equal(a.signed["gradient"], b.signed["gradient"])
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5, 6] and {s[1] for s in seen} == {6}
    assert seen[2][2] == ["original", "head", "blocks.2"]


def test_a_failing_callback_leaves_the_model_as_it_was():
    net = small_net()
    before = fingerprint(net.model)

    def stop(done, total, partial):
        if done == 3:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        net.sanity_check(image(), methods=["guided_backprop"], progress=False, callback=stop)
    assert_same(net.model, before)


@pytest.mark.parametrize("options, match", [
    ({"methods": ["gradiant"]}, "method"),
    ({"methods": []}, "methods is empty"),
    ({"stages": ["nope"]}, "stage 'nope' is not a module"),
    ({"stages": ["blocks.1"]}, "with parameters"),
    ({"stages": "head"}, "list of module names"),
    ({"stages": ["head", "head"]}, "each once"),
    ({"seed": -1}, "seed"),
    ({"cascade": "yes"}, "cascade"),
    ({"metods": ["gradient"]}, "did you mean 'methods'"),
])
def test_bad_options_raise_option_error_and_change_nothing(options, match):
    net = small_net()
    before = fingerprint(net.model)
    with pytest.raises(OptionError, match=match):
        net.sanity_check(image(), progress=False, **options)
    assert_same(net.model, before)


def test_similarity_measures_against_independent_computations():
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=(24, 20)), 1)  # ties, as saliency maps have
    b = a + rng.normal(scale=0.8, size=a.shape)
    b[:4] = 0.0
    assert similarity(torch.tensor(a), torch.tensor(b), "spearman") == pytest.approx(stats.spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
    assert similarity(a, b, "spearman_abs") == pytest.approx(stats.spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0], abs=1e-12)
    # SSIM from its definition (Wang et al. 2004): 7x7 uniform window, sample covariances, on |map| / max
    x, y = np.abs(a) / np.abs(a).max(), np.abs(b) / np.abs(b).max()
    n = 49
    mean = lambda v: ndimage.uniform_filter(v, 7)  # noqa: E731
    mx, my = mean(x), mean(y)
    vx, vy = (mean(x * x) - mx * mx) * n / (n - 1), (mean(y * y) - my * my) * n / (n - 1)
    cxy = (mean(x * y) - mx * my) * n / (n - 1)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    assert similarity(a, b, "ssim") == pytest.approx(s[3:-3, 3:-3].mean(), abs=1e-9)
    assert similarity(a, a, "hog") == pytest.approx(1.0) and similarity(a, b, "hog") == pytest.approx(similarity(b, a, "hog"))
    assert similarity(a, b, "hog") < 0.99
    with pytest.raises(OptionError, match="metric"):
        similarity(a, b, "pearson")
    with pytest.raises(OptionError, match="same"):
        similarity(a, b[:5], "ssim")


def test_guided_backprop_survives_a_random_classifier_where_the_gradient_does_not():
    """The paper's finding (its Figure 2): with only the classifier randomised, guided backprop's map
    barely changes on the default model (Spearman of |maps| 0.999 measured), the gradient's does
    (0.40); on the trained digits CNN the gap is smaller (0.63 against 0.19) but there too."""
    net = cw.load_default()
    result = net.sanity_check(cw.sample_image("cat"), methods=["gradient", "guided_backprop"], stages=["classifier"],
                              progress=False)
    guided, gradient = result.similarity("guided_backprop")[1], result.similarity("gradient")[1]
    assert guided > 0.98 and gradient < 0.6, (guided, gradient)
    net = cw.digits_cnn()
    result = net.sanity_check(cw.datasets.digits().test[0][0], methods=["gradient", "guided_backprop"],
                              stages=default_stages(net.model)[:1], progress=False)
    guided, gradient = result.similarity("guided_backprop")[1], result.similarity("gradient")[1]
    assert guided > gradient + 0.3, (guided, gradient)


def test_data_randomisation_with_the_digits_cnn_trained_on_shuffled_labels():
    """The paper's second test: a model trained on permuted labels can only memorise (test accuracy
    near chance), so a method that explains the model gives it different maps."""
    from cnn_widgets.engine.sanity import similarity as similar

    trained, shuffled = cw.digits_cnn(), cw.digits_cnn(shuffled_labels=True)
    assert shuffled is not trained and shuffled is cw.digits_cnn(shuffled_labels=True)  # cached apart
    assert trained.test_accuracy > 0.9 and shuffled.test_accuracy < 0.3
    assert shuffled.labels == trained.labels and "shuffled" in shuffled.name
    digits = cw.datasets.digits().test
    scores = []
    for i in range(5):
        digit, label = digits[i]
        a = trained.saliency(digit, int(label), method="gradient").sum(0)
        b = shuffled.saliency(digit, int(label), method="gradient").sum(0)
        assert b.abs().sum() > 0  # a live network (at the normal learning rate every ReLU died: all zero)
        scores.append(similar(a, b, "spearman_abs"))
    assert np.mean(scores) < 0.8, scores
    with pytest.raises(OptionError, match="shuffled_labels"):
        cw.digits_cnn(shuffled_labels="yes")


def test_the_verdict_reads_the_top_half_stage_and_a_flat_map_changed():
    from cnn_widgets.engine.sanity import SIMILAR, SanityCheck

    generator = torch.Generator().manual_seed(0)
    original = torch.rand(8, 8, generator=generator)
    # four randomised stages planned: the top half is stage 2 (two randomised); stage 1 is a copy of the original
    maps = torch.stack([original, original, original * 0.5 + 1.0, torch.rand(8, 8, generator=generator), original])
    flat = torch.stack([original, original, torch.zeros(8, 8), original, original])
    check = SanityCheck(["original", "a", "b", "c", "d"], ["kept", "flat"], {"kept": maps, "flat": flat},
                        {"kept": maps, "flat": flat}, planned=4)
    assert check.half_stage() == 2
    kept = check.verdict("kept")  # a monotone change of the original map: rank correlation 1
    assert kept["fails"] and kept["similarity"] == pytest.approx(1.0) and kept["stage"] == "b" and SIMILAR <= 1.0
    assert "changes little" in kept["text"] and "1.00" in kept["text"]
    gone = check.verdict("flat")
    assert not gone["fails"] and gone["similarity"] != gone["similarity"] and "flat" in gone["text"]
    partial = SanityCheck(["original", "a"], ["kept"], {"kept": maps[:2]}, {"kept": maps[:2]}, planned=4)
    assert partial.half_stage() is None and partial.verdict("kept") is None  # not computed yet
    independent = SanityCheck(check.stages, ["kept"], {"kept": maps}, {"kept": maps}, cascade=False, planned=4)
    assert independent.verdict("kept") is None  # "the top half" is a cascade's
