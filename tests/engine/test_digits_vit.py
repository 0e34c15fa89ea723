"""The offline tiny ViT trained on digits: it learns, its blocks are layers, and what it attends to is the ink."""

from __future__ import annotations

import torch

import cnn_widgets as cw
from cnn_widgets.engine.datasets import digits
from cnn_widgets.engine.hooks import hook_count


def test_digits_vit_learns_and_is_explorable():
    net = cw.digits_vit()
    assert net is cw.digits_vit()  # cached
    model = net.model
    data = digits().test
    # its accuracy, recomputed with a plain forward pass over the test split
    x = torch.stack([net.preprocess(data.pil(i)) for i in range(len(data))])
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == data.targets).double().mean())
    assert accuracy == net.test_accuracy > 0.9
    assert [n for n in net.layer_names if n.startswith("blocks.3")] == ["blocks.3", "blocks.3:tokens"]
    assert net.layer("blocks.3").shape == (48, 4, 4) and net.layer_below("head") == "blocks.3:tokens"
    # attention rollout puts more weight on the patches with ink than on the empty ones
    image = data.pil(0)
    rollout = net.saliency(image, method="attention_rollout")
    ink = net.prepare(image)[0].mean(0) > 0  # the digit (white on black, normalised around 0)
    assert rollout[ink].mean() > rollout[~ink].mean()
    assert hook_count(model) == 0 and not any(p.grad is not None for p in model.parameters())
