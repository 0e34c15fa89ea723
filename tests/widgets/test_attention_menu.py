"""The Explorer offers attention rollout on a vision transformer only: a CNN's menu and Trust tab never
list a method that can only fail, and a network change drops it from the chosen method and methods."""

from __future__ import annotations

import pytest
import torch
from traitlets import TraitError

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.widgets.panels.saliency import saliency_display

timm = pytest.importorskip("timm")
from timm.models.vision_transformer import VisionTransformer  # noqa: E402


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=5).eval()
    return cw.Network(model, preprocess=cw.imagenet_preprocess(size=32, resize=32), name="tiny vit")


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 5))
    return cw.Network(model, preprocess=cw.imagenet_preprocess(size=32, resize=32), name="tiny cnn")


def offered(explorer) -> list[str]:
    return [name for name, _ in explorer.choices["options"]["method"]]


def test_rollout_is_offered_and_shown_on_a_vit_and_dropped_for_a_cnn(vit, cnn):
    explorer = cw.Explorer(vit)
    assert "attention_rollout" in offered(explorer) and explorer.error == ""
    explorer.method = "attention_rollout"
    assert explorer.error == "" and explorer.saliency_info["output"] == "map"
    expected = saliency_display(vit.saliency(explorer.image, explorer.resolved_target(), method="attention_rollout"), "map")
    assert (explorer.saliency == expected).all()
    explorer.trust_methods = ["gradient", "attention_rollout"]

    explorer.net = cnn  # the method it lacks goes back to the default; the Trust tab keeps what it offers
    assert "attention_rollout" not in offered(explorer)
    assert explorer.method == "guided_backprop" and explorer.trust_methods == ["gradient"]
    assert explorer.error == ""
    with pytest.raises(TraitError, match="method"):
        explorer.method = "attention_rollout"
    with pytest.raises(TraitError, match="trust_methods"):
        explorer.trust_methods = ["attention_rollout"]
    explorer.net = vit
    assert "attention_rollout" in offered(explorer)
    explorer.runner.wait()
    assert hook_count(vit.model) == hook_count(cnn.model) == 0


def test_a_cnn_explorer_never_lists_rollout(cnn):
    explorer = cw.Explorer(cnn)
    assert "attention_rollout" not in offered(explorer) and "gradient" in offered(explorer)
    assert all(m in offered(explorer) for m in explorer.trust_methods)
