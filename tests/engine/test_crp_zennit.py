"""Our Concept Relevance Propagation (``contribution_tree(rule="lrp")``) against zennit-crp 0.4.

Every expected number comes out of zennit-crp's ``CondAttribution`` with zennit's own composite and
canonizers (``EpsilonPlusFlat`` / ``EpsilonGammaBox``, ``VGGCanonizer`` / ``ResNetCanonizer``),
never our result read back. Achtibat et al., "From attribution maps to human-understandable
explanations through Concept Relevance Propagation", Nature Machine Intelligence 2023.

A tree node at the end of ``path = (u1, ..., un)`` under a class root ``c`` is conditioned on its
whole path, which is zennit-crp's condition ``{"y": [c], u1.layer: [u1.channel], ..., un.layer:
[un.channel]}`` (our layer names are module names, as zennit-crp's are). So:

* the node's ``raw_picture`` (``[3, H, W]``, the input's conditional relevance) summed over colour
  channels is zennit-crp's conditional heatmap;
* the node's ``score`` is zennit-crp's relevance of channel ``un`` at ``un.layer`` (its
  ``record_layer`` relevances summed over the map) under the conditions *above* it.

The path follows ``net.layer_below`` (the only steps our tree takes): on VGG16 the class, then
``classifier.4``, ``classifier.1``, ``avgpool``, ``features.27``; on ResNet-18 the class, then
``avgpool``, ``layer3.1``, ``layer2.1``. Random weights (nothing is downloaded); ResNet-18's batch
norms get random statistics and affine parameters, so merging them into the convolutions matters.
64 px inputs keep the module at a few seconds.
"""

from __future__ import annotations

import pytest
import torch

crp_attribution = pytest.importorskip("crp.attribution")
zennit_composites = pytest.importorskip("zennit.composites")
zennit_torchvision = pytest.importorskip("zennit.torchvision")
torchvision = pytest.importorskip("torchvision")

import cnn_widgets as cw
from cnn_widgets.engine.lrp_mode import input_bounds
from cnn_widgets.engine.preprocess import imagenet_preprocess

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tests/engine/conftest.py
              pytest.mark.filterwarnings("ignore::UserWarning")]

MAP_TOL = 1e-3  # max |ours - crp| / max |crp| of a heatmap
SCORE_TOL = 1e-3  # relative error of a channel's conditional relevance
SIZE = 64


def _vgg16() -> torch.nn.Module:
    """torchvision's VGG16 with its classifier narrowed from 4096 to 256 units (same modules, same
    names): zennit's rules copy every weight on each call, and 120M classifier weights made each
    zennit-crp call take over a second."""
    torch.manual_seed(0)
    model = torchvision.models.vgg16()
    model.classifier = torch.nn.Sequential(
        torch.nn.Linear(512 * 7 * 7, 256), torch.nn.ReLU(True), torch.nn.Dropout(),
        torch.nn.Linear(256, 256), torch.nn.ReLU(True), torch.nn.Dropout(), torch.nn.Linear(256, 1000))
    return model.eval()


def _resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                bn.running_var.copy_(0.5 + torch.rand(n, generator=g))
                bn.weight.copy_(0.5 + torch.rand(n, generator=g))
                bn.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


MODELS = {  # name -> (model factory, zennit's canonizer, the layers of the path below the class)
    "vgg16": (_vgg16, zennit_torchvision.VGGCanonizer, ("classifier.4", "classifier.1", "avgpool", "features.27")),
    "resnet18": (_resnet18, zennit_torchvision.ResNetCanonizer, ("avgpool", "layer3.1", "layer2.1")),
}


@pytest.fixture(scope="module")
def nets():
    built = {}

    def get(name):
        if name not in built:
            factory = MODELS[name][0]
            built[name] = cw.Network(factory(), preprocess=imagenet_preprocess(SIZE, SIZE + SIZE // 8), name=name)
        return built[name]

    return get


def zennit_composite(name: str, net: cw.Network, x: torch.Tensor, canonizer):
    if name == "epsilon_plus_flat":
        return zennit_composites.EpsilonPlusFlat(canonizers=[canonizer()])
    low, high = input_bounds(net)  # the z-B box: black and white pixels through the preprocessing
    return zennit_composites.EpsilonGammaBox(low=low.expand_as(x), high=high.expand_as(x), canonizers=[canonizer()])


def our_path(net, image, composite: str, choose: tuple[int, ...]):
    """The nodes from the class root down, following child ``choose[i]`` at level ``i`` (each node
    computed by the call an explorer makes on a click: ``path=`` the units so far)."""
    nodes = [net.contribution_tree(image, None, depth=1, k=2, rule="lrp", composite=composite)]
    path: tuple = ()
    for pick in choose:
        path = (*path, nodes[-1].children[pick].unit)
        nodes.append(net.contribution_tree(image, None, depth=1, k=2, rule="lrp", composite=composite, path=path))
    return nodes


def crp(net, x, composite, conditions: list[dict], record: list[str]):
    """zennit-crp's conditional attribution of ``x``, one batch row per condition."""
    attribution = crp_attribution.CondAttribution(net.model)
    data = x.detach().clone().requires_grad_(True)
    return attribution(data, conditions, composite, record_layer=record)


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
@pytest.mark.parametrize("model", ["vgg16", "resnet18"])
def test_conditional_maps_and_scores_match_zennit_crp(nets, model, composite):
    net = nets(model)
    _, canonizer, layers = MODELS[model]
    image = cw.sample_image("cat")
    x = net.prepare(image)
    # the best child at the first levels, then the second best: not only the top of every ranking
    choose = (0,) * (len(layers) - 1) + (1,)
    nodes = our_path(net, image, composite, choose)
    assert tuple(n.layer for n in nodes[1:]) == layers  # the chain of net.layer_below this test maps
    before = [v.detach().clone() for v in net.model.state_dict().values()]
    comp = zennit_composite(composite, net, x, canonizer)

    # one zennit-crp call, one batch row per node: row i is conditioned on the path down to node i
    c = nodes[0].unit.channel
    conditions = [{"y": [c], **{n.layer: [n.channel] for n in nodes[1:i + 1]}} for i in range(len(nodes))]
    result = crp(net, x, comp, conditions, list(layers))
    assert torch.allclose(result.prediction[:, c], torch.tensor(nodes[0].score), rtol=1e-4)

    report = []
    for i, node in enumerate(nodes):
        heatmap = result.heatmap[i]  # [H, W]: relevance summed over colours
        scale = float(heatmap.abs().max())
        assert scale > 0
        ours = node.raw_picture.sum(dim=0)
        assert ours.shape == heatmap.shape == (SIZE, SIZE)
        map_err = float((ours - heatmap).abs().max()) / scale
        if i == 0:
            expected = float(result.prediction[0, c].detach())  # the root's score is its logit
        else:
            # the channel's relevance at its layer under the conditions above it: the previous row
            expected = float(result.relevances[node.layer][i - 1, node.channel].sum())
        score_err = abs(node.score - expected) / abs(expected)
        report.append(f"{node.label}: map {map_err:.2e}, score {node.score:.4g} vs {expected:.4g} ({score_err:.2e})")
        assert map_err < MAP_TOL, report
        assert score_err < SCORE_TOL, report
        if i > 0:
            # the condition changes the map: a comparison that ignored the path would fail
            previous = result.heatmap[i - 1]
            differs = float((previous / previous.abs().max() - heatmap / scale).abs().max())
            assert differs > 10 * MAP_TOL, report
    print("\n".join(report))

    after = net.model.state_dict().values()
    assert all(torch.equal(a, b) for a, b in zip(after, before))  # zennit's canonizers restored the model


def test_children_total_is_zennit_crp_relevance_of_the_layer_below(nets):
    """A node's ``children_total`` (the scores of *every* channel of the layer below, summed: what
    the step kept of the node's relevance) is zennit-crp's relevance of that layer, summed, under the
    node's conditions."""
    net = nets("resnet18")
    image = cw.sample_image("cat")
    x = net.prepare(image)
    nodes = our_path(net, image, "epsilon_plus_flat", (0, 0, 1))
    comp = zennit_composite("epsilon_plus_flat", net, x, zennit_torchvision.ResNetCanonizer)
    c = nodes[0].unit.channel
    report = []
    for i, node in enumerate(nodes):
        below = net.layer_below(node.layer)
        conditions = {"y": [c], **{n.layer: [n.channel] for n in nodes[1:i + 1]}}
        expected = float(crp(net, x, comp, [conditions], [below]).relevances[below].sum())
        report.append(f"{node.label} -> {below}: {node.children_total:.6g} vs {expected:.6g}")
        assert node.children_total is not None and expected != 0.0
        assert abs(node.children_total - expected) <= SCORE_TOL * abs(expected), report
    print("\n".join(report))
