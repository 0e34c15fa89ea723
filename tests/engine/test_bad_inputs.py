"""Bad input -> error type and message, one table, and the model untouched after every error.

Every bad option raises ``cw.OptionError``, a bad target ``cw.TargetError``, a bad image
``cw.ImageError``, a bad layer name ``cw.LayerNotFoundError`` and a model that cannot be explored
``cw.ModelError``; the message names the problem and the fix. After each error the models here
have no hook left, the same ``training`` / ``requires_grad`` flags and weights, no ``.grad``, and
the network still answers.

Image files and arrays (16-bit, float modes, EXIF, empty, truncated, decompression bombs, tensor
layouts, NaN) are covered case by case in ``test_images.py`` and ``test_network.py``
(``test_bad_images_get_clear_errors``); this table adds what they do not reach.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count

SIZE = 16


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv(x) + x)


class Small(nn.Module):
    """stem (conv) -> act -> block (residual) -> pool -> conv2 -> relu2 -> gap -> fc: 3 classes."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(channels, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.block = Residual(4)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.pool(self.block(self.act(self.stem(x))))
        return self.fc(self.gap(self.relu2(self.conv2(x))).flatten(1))


class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Small()

    def forward(self, x):
        return {"aux": x.mean(), "scores": self.body(x)}


class SegOut(nn.Module):
    """A per-pixel output [N, 2, H, W] (segmentation), not class scores."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class ConvNotUsed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def cifar(channels: int = 3) -> nn.Sequential:
    """Runs on 32x32 inputs only (a fixed Linear after the convs)."""
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 16 * 16, 3))


RESIZE = T.Compose([T.Resize((SIZE, SIZE)), T.ToTensor()])
LABELS = ["tabby, tabby cat", "dog", "car"]


def quiet(make: Callable[[], object]):
    """``make()`` without torch.jit's deprecation warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make()


def with_part(part: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """``Small`` with its residual block replaced by ``part(block)`` (scripted or compiled)."""
    model = Small()
    model.block = quiet(lambda: part(model.block))
    return model


@dataclass
class Ctx:
    net: cw.Network  # Small, resized 16x16 inputs, labels
    cifar: cw.Network  # no-resize 32x32, input_size given
    gray: cw.Network  # one channel
    dict_net: cw.Network  # dict output, no selector
    image: Image.Image
    scan: cw.Scan


@pytest.fixture(scope="module")
def ctx() -> Ctx:
    torch.manual_seed(0)
    net = cw.Network(Small().train(), preprocess=RESIZE, labels=LABELS)
    net.model.stem.weight.requires_grad_(False)  # a partly frozen model keeps its flags
    image = cw.sample_image("cat")
    scan = net.scan([image, cw.sample_image("coffee")], layers=["relu2"], k=2, progress=False)
    return Ctx(
        net=net,
        cifar=cw.Network(cifar(), preprocess=T.ToTensor(), input_size=32),
        gray=cw.Network(cifar(1), preprocess=T.Compose([T.Grayscale(), T.ToTensor()]), input_size=32),
        dict_net=cw.Network(DictOut(), preprocess=RESIZE),
        image=image,
        scan=scan,
    )


@dataclass(frozen=True)
class Bad:
    id: str
    call: Callable[[Ctx], object]
    error: type[Exception]
    match: str
    xfail: str | None = None  # the exact bug, for cases in files owned elsewhere


def U(layer, channel, **kwargs):
    return lambda: cw.Unit(layer, channel, **kwargs)


def sal(target, method="gradient", **options):
    return lambda c: c.net.saliency(c.image, target() if callable(target) else target, method, **options)


OPTION, TARGET, IMAGE, LAYER, MODEL = cw.OptionError, cw.TargetError, cw.ImageError, cw.LayerNotFoundError, cw.ModelError
NAN = float("nan")

CASES = [
    # ---------------------------------------------------------------- layer names (did you mean)
    Bad("activations-typo", lambda c: c.net.activations(c.image, "blok"), LAYER, r"no explorable layer 'blok'; did you mean 'block'"),
    Bad("activations-layer-int", lambda c: c.net.activations(c.image, 123), LAYER, r"no explorable layer 123 \(net\.layers lists them all\)"),
    Bad("activations-layer-none-in-list", lambda c: c.net.activations(c.image, [None]), LAYER, r"no explorable layer None"),
    Bad("unit-layer-typo", sal(U("conv3", 0)), LAYER, r"'conv3'; did you mean 'conv2'"),
    Bad("unit-layer-module-name-not-layer", sal(U("block.cnv", 0)), LAYER, r"did you mean 'block.conv'"),
    Bad("filters-typo", lambda c: c.net.filters("stm"), LAYER, r"did you mean 'stem'"),
    Bad("filters-of-pool", lambda c: c.net.filters("pool"), LAYER, r"'pool' is a pool layer and has no filters; pick a conv or linear layer, e\.g\. 'stem'"),
    Bad("into-typo", lambda c: c.net.contributions(c.image, cw.Unit("conv2", 0), into="actt"), LAYER, r"did you mean 'act'"),
    Bad("scan-layers-typo", lambda c: c.net.scan([c.image], layers=["relu3"], progress=False), LAYER, r"did you mean 'relu2'"),
    Bad("top-images-unscanned-layer", lambda c: c.scan.top_images(cw.Unit("conv2", 0)), LAYER, r"'conv2' was not scanned.*layers=\['conv2'\]"),
    Bad("grad-cam-layer-typo", sal(0, "grad_cam", layer="blockk"), LAYER, r"no layer or module 'blockk'; did you mean"),
    Bad("layer-below-typo", lambda c: c.net.layer_below("fcc"), LAYER, r"did you mean 'fc'"),
    # ---------------------------------------------------------------- channels
    Bad("channel-too-big", sal(U("conv2", 6)), TARGET, r"channel 6 is out of range for layer 'conv2', which has 6 channels \(0\.\.5\)"),
    Bad("channel-negative", sal(U("conv2", -1)), TARGET, r"channel -1 is out of range .* \(0\.\.5\)"),
    Bad("channel-fraction", lambda c: cw.Unit("conv2", 2.7), TARGET, r"Unit\.channel must be an integer, got 2\.7"),
    Bad("channel-bool", lambda c: cw.Unit("conv2", True), TARGET, r"Unit\.channel must be an integer, got True"),
    Bad("channel-string", lambda c: cw.Unit("conv2", "1"), TARGET, r"Unit\.channel must be an integer, got '1'"),
    Bad("channel-none", lambda c: cw.Unit("conv2", None), TARGET, r"Unit\.channel must be an integer, got None"),
    Bad("top-images-channel", lambda c: c.scan.top_images(cw.Unit("relu2", 9)), TARGET, r"channel 9 is out of range for layer 'relu2'"),
    Bad("tree-path-channel", lambda c: c.net.contribution_tree(c.image, 0, depth=1, path=(cw.Unit("gap", 7),)), TARGET,
        r"path step 1: channel 7 is out of range for 'gap' \(0\.\.5\)"),
    # ---------------------------------------------------------------- positions
    Bad("position-outside", sal(U("conv2", 0, position=(8, 0))), TARGET, r"position \(8, 0\) is outside the 8x8 map of layer 'conv2'; use 0\.\.7, 0\.\.7"),
    Bad("position-negative", sal(U("conv2", 0, position=(0, -1))), TARGET, r"position \(0, -1\) is outside the 8x8 map"),
    Bad("position-non-spatial", sal(U("fc", 0, position=(0, 0))), TARGET, r"layer 'fc' has no spatial map; drop the position"),
    Bad("position-fraction", lambda c: cw.Unit("conv2", 0, position=(1.5, 0)), TARGET, r"Unit\.position y must be an integer, got 1\.5"),
    Bad("position-one-number", lambda c: cw.Unit("conv2", 0, position=3), TARGET, r"Unit\.position must be None or a pair \(y, x\)"),
    Bad("position-wrong-length", lambda c: cw.Unit("conv2", 0, position=(1, 2, 3)), TARGET, r"a pair \(y, x\) of integers, got \(1, 2, 3\)"),
    Bad("unit-reduce", lambda c: cw.Unit("conv2", 0, reduce="mean"), OPTION, r"Unit\.reduce must be one of 'sum', 'max', got 'mean'; did you mean 'max'"),
    # ---------------------------------------------------------------- classes
    Bad("class-out-of-range", sal(3), TARGET, r"class index 3 is out of range; the model has 3 classes \(0\.\.2\)"),
    Bad("class-negative", sal(-1), TARGET, r"class index -1 is out of range"),
    Bad("class-float", sal(1.5), TARGET, r"class index must be an integer, got 1\.5"),
    Bad("class-float-tensor", sal(torch.tensor(1.5)), TARGET, r"class index must be an integer"),
    Bad("class-bool", sal(True), TARGET, r"target True is not a class index"),
    Bad("class-list", sal([1]), TARGET, r"cannot use \[1\] as a target; pass a class index, a class label string or cw\.Unit"),
    Bad("class-label-unknown", sal("tabbycat"), TARGET, r"no class is labelled 'tabbycat'; did you mean 'tabby, tabby cat'"),
    Bad("class-occlusion", lambda c: c.net.occlusion(c.image, 7, window=8, stride=8), TARGET, r"class index 7 is out of range"),
    Bad("class-tree", lambda c: c.net.contribution_tree(c.image, "lion", depth=1), TARGET, r"no class is labelled 'lion'"),
    # ---------------------------------------------------------------- saliency methods and options
    Bad("method-unknown", sal(0, "guided"), OPTION, r"method must be one of .*got 'guided'; did you mean 'guided_backprop'"),
    Bad("method-none", sal(0, None), OPTION, r"method must be one of 'gradient'.*got None"),
    Bad("option-unknown", sal(0, "gradient", steps=3), OPTION, r"saliency method 'gradient' has no option 'steps'; its options are quantity"),
    Bad("option-of-another-method", sal(0, "smoothgrad", layer="block"), OPTION, r"has no option 'layer'; its options are n_samples"),
    *[Bad(f"quantity-{m}", sal(0, m, quantity="prob"), OPTION, r"quantity must be one of 'logit', 'probability', got 'prob'; did you mean 'probability'")
      for m in ("gradient", "deconvnet", "guided_backprop", "input_x_gradient", "smoothgrad", "integrated_gradients", "grad_cam")],
    Bad("smoothgrad-n-samples-0", sal(0, "smoothgrad", n_samples=0), OPTION, r"n_samples must be a positive integer, got 0"),
    Bad("smoothgrad-n-samples-float", sal(0, "smoothgrad", n_samples=2.5), OPTION, r"n_samples must be a positive integer, got 2\.5"),
    Bad("smoothgrad-noise-negative", sal(0, "smoothgrad", noise=-0.1), OPTION, r"noise must be a non-negative number, got -0\.1"),
    Bad("smoothgrad-noise-nan", sal(0, "smoothgrad", noise=NAN), OPTION, r"noise must be a non-negative number, got nan"),
    Bad("smoothgrad-seed", sal(0, "smoothgrad", seed=1.5), OPTION, r"seed must be an integer or None, got 1\.5"),
    Bad("smoothgrad-batch-size", sal(0, "smoothgrad", batch_size=0), OPTION, r"batch_size must be a positive integer, got 0"),
    Bad("ig-steps-0", sal(0, "integrated_gradients", steps=0), OPTION, r"steps must be a positive integer, got 0"),
    Bad("ig-steps-bool", sal(0, "integrated_gradients", steps=True), OPTION, r"steps must be a positive integer, got True"),
    Bad("ig-integration", sal(0, "integrated_gradients", integration="simpson"), OPTION, r"integration must be one of 'gauss_legendre', 'trapezoid', got 'simpson'"),
    Bad("ig-trapezoid-one-step", sal(0, "integrated_gradients", integration="trapezoid", steps=1), OPTION, r"trapezoid integration needs steps >= 2"),
    Bad("ig-baseline-shape", sal(0, "integrated_gradients", baseline=torch.zeros(3, 8, 8)), OPTION, r"baseline must have the model input's shape \(3, 16, 16\), got \(3, 8, 8\)"),
    Bad("ig-baseline-string", sal(0, "integrated_gradients", baseline="black"), OPTION, r"baseline must be None \(zeros\), a number or a tensor"),
    Bad("ig-baseline-nan", sal(0, "integrated_gradients", baseline=NAN), OPTION, r"baseline"),
    Bad("ig-batch-size", sal(0, "integrated_gradients", batch_size=-2), OPTION, r"batch_size must be a positive integer, got -2"),
    Bad("grad-cam-non-spatial-layer", sal(0, "grad_cam", layer="fc"), OPTION, r"grad_cam needs a spatial layer \[C, H, W\].*'fc' has shape \(3,\)"),
    Bad("grad-cam-after-relu-int", sal(0, "grad_cam", after_relu=1), OPTION, r"after_relu must be True or False, got 1"),
    # ---------------------------------------------------------------- occlusion options
    Bad("occlusion-window-0", lambda c: c.net.occlusion(c.image, 0, window=0, stride=1), OPTION, r"window must be a positive integer, got 0"),
    Bad("occlusion-window-too-big", lambda c: c.net.occlusion(c.image, 0, window=17, stride=4), OPTION, r"window 17 is larger than the 16x16 model input; use a window of at most 16"),
    Bad("occlusion-window-float", lambda c: c.net.occlusion(c.image, 0, window=4.5, stride=2), OPTION, r"window must be a positive integer, got 4\.5"),
    Bad("occlusion-stride-0", lambda c: c.net.occlusion(c.image, 0, window=4, stride=0), OPTION, r"stride must be a positive integer, got 0"),
    Bad("occlusion-stride-over-window", lambda c: c.net.occlusion(c.image, 0, window=4, stride=8), OPTION, r"stride 8 is larger than the window 4.*at most 4"),
    Bad("occlusion-fill", lambda c: c.net.occlusion(c.image, 0, window=8, stride=8, fill="grey"), OPTION, r"fill must be one of 'zero', 'mean', 'blur', got 'grey'"),
    Bad("occlusion-quantity", lambda c: c.net.occlusion(c.image, 0, window=8, stride=8, quantity="p"), OPTION, r"quantity must be one of 'logit', 'probability'"),
    Bad("occlusion-batch-size", lambda c: c.net.occlusion(c.image, 0, window=8, stride=8, batch_size=0), OPTION, r"batch_size must be a positive integer, got 0"),
    Bad("occlusion-grid-string", lambda c: c.net.occlusion(c.image, 0, window=8, stride=8, grid="yes"), OPTION, r"grid must be True or False, got 'yes'"),
    Bad("occlusion-progress-string", lambda c: c.net.occlusion(c.image, 0, window=8, stride=8, progress="yes"), OPTION, r"progress must be True or False, got 'yes'"),
    Bad("occlusion-option-unknown", lambda c: c.net.occlusion(c.image, 0, window=8, stride=8, windw=4), OPTION, r"windw"),
    # ---------------------------------------------------------------- contributions and trees
    Bad("contributions-k-0", lambda c: c.net.contributions(c.image, 0, k=0), OPTION, r"k must be a positive integer, got 0"),
    Bad("contributions-k-float", lambda c: c.net.contributions(c.image, 0, k=2.5), OPTION, r"k must be a positive integer, got 2\.5"),
    Bad("contributions-rule", lambda c: c.net.contributions(c.image, 0, rule="guide"), OPTION, r"rule must be one of 'gradient', 'guided', 'lrp', got 'guide'; did you mean 'guided'"),
    Bad("contributions-reduce", lambda c: c.net.contributions(c.image, 0, reduce="mean"), OPTION, r"reduce must be one of 'sum', 'max', got 'mean'"),
    Bad("contributions-into-above", lambda c: c.net.contributions(c.image, cw.Unit("conv2", 0), into="relu2"), TARGET, r"into='relu2' must be a layer below 'conv2'"),
    Bad("contributions-first-layer", lambda c: c.net.contributions(c.image, cw.Unit("stem", 0)), TARGET, r"'stem' is the first layer: there is no layer below it"),
    Bad("contributions-option-unknown", lambda c: c.net.contributions(c.image, 0, depth=2), OPTION, r"depth"),
    Bad("tree-depth-negative", lambda c: c.net.contribution_tree(c.image, 0, depth=-1), OPTION, r"depth must be an integer at least 0, got -1"),
    Bad("tree-depth-float", lambda c: c.net.contribution_tree(c.image, 0, depth=1.5), OPTION, r"depth must be an integer at least 0, got 1\.5"),
    Bad("tree-k-0", lambda c: c.net.contribution_tree(c.image, 0, k=0), OPTION, r"k must be a positive integer, got 0"),
    Bad("tree-rule", lambda c: c.net.contribution_tree(c.image, 0, rule="deconvnet"), OPTION, r"rule must be one of 'gradient', 'guided', 'lrp', got 'deconvnet'"),
    Bad("tree-reduce", lambda c: c.net.contribution_tree(c.image, 0, reduce="avg"), OPTION, r"reduce must be one of 'sum', 'max'"),
    Bad("tree-percentile-0", lambda c: c.net.contribution_tree(c.image, 0, percentile=0), OPTION, r"percentile must be a number in \(0, 100\], got 0"),
    Bad("tree-percentile-over-100", lambda c: c.net.contribution_tree(c.image, 0, percentile=101), OPTION, r"percentile must be a number in \(0, 100\]"),
    Bad("tree-follow", lambda c: c.net.contribution_tree(c.image, 0, follow="worst"), OPTION, r"follow must be None, 'best' or a list of child indices in 0\.\.4"),
    Bad("tree-follow-index", lambda c: c.net.contribution_tree(c.image, 0, k=2, follow=[2]), OPTION, r"child indices in 0\.\.1, got \[2\]"),
    Bad("tree-option-unknown", lambda c: c.net.contribution_tree(c.image, 0, dept=2), OPTION, r"contribution_tree has no option 'dept'; did you mean 'depth'"),
    Bad("tree-path-layer", lambda c: c.net.contribution_tree(c.image, 0, path=[cw.Unit("stem", 0)]), TARGET, r"path step 1 is in layer 'stem' but the layer below 'fc' is"),
    Bad("tree-path-not-unit", lambda c: c.net.contribution_tree(c.image, 0, path=[("relu2", 0)]), TARGET, r"path entries must be cw\.Unit, got \('relu2', 0\)"),
    # ---------------------------------------------------------------- predict and scans
    Bad("predict-k-0", lambda c: c.net.predict(c.image, k=0), OPTION, r"k must be a positive integer, got 0"),
    Bad("predict-k-bool", lambda c: c.net.predict(c.image, k=True), OPTION, r"k must be a positive integer, got True"),
    Bad("predict-k-string", lambda c: c.net.predict(c.image, k="3"), OPTION, r"k must be a positive integer, got '3'"),
    Bad("scan-k-0", lambda c: c.net.scan([c.image], k=0, progress=False), OPTION, r"k must be a positive integer, got 0"),
    Bad("scan-batch-size", lambda c: c.net.scan([c.image], batch_size=0, progress=False), OPTION, r"batch_size must be a positive integer, got 0"),
    Bad("scan-workers", lambda c: c.net.scan([c.image], num_workers=-1, progress=False), OPTION, r"num_workers must be an integer at least 0, got -1"),
    Bad("scan-progress", lambda c: c.net.scan([c.image], progress="no"), OPTION, r"progress must be True or False, got 'no'"),
    Bad("top-images-method", lambda c: c.scan.top_images(cw.Unit("relu2", 0), method="saliency"), OPTION, r"method must be one of"),
    Bad("top-images-k", lambda c: c.scan.top_images(cw.Unit("relu2", 0), k=0), OPTION, r"k must be a positive integer, got 0"),
    Bad("embedding-method", lambda c: c.scan.embedding("relu2", method="umap"), OPTION, r"method must be one of 'pca', 'tsne', got 'umap'"),
    Bad("dead-channels-threshold", lambda c: c.scan.dead_channels("relu2", threshold=-1), OPTION, r"threshold must be a number in \[0\.0, 1\.0\], got -1"),
    # ---------------------------------------------------------------- images (see also test_images.py)
    Bad("image-rgba-tensor", lambda c: c.net.predict(torch.rand(4, SIZE, SIZE)), IMAGE, r"must be a preprocessed input \[3, H, W\].*got shape \(4, 16, 16\)"),
    Bad("image-rgb-tensor-to-gray-model", lambda c: c.gray.predict(torch.rand(3, 32, 32)), IMAGE, r"preprocessed input \[1, H, W\].*got shape \(3, 32, 32\)"),
    Bad("image-two-channel-array", lambda c: c.net.predict(np.zeros((SIZE, SIZE, 2), np.uint8)), IMAGE, r"HxW \(grayscale\), HxWx3 \(RGB\) or HxWx4 \(RGBA\); got shape \(16, 16, 2\)"),
    Bad("image-none", lambda c: c.net.predict(None), IMAGE, r"cannot use an object of type NoneType as an image"),
    Bad("image-bytes", lambda c: c.net.saliency(b"\x89PNG", 0), IMAGE, r"cannot use an object of type bytes"),
    Bad("image-directory", lambda c: c.net.occlusion("/", 0, window=8, stride=8), IMAGE, r"cannot read '/' as an image"),
    Bad("image-integer-tensor", lambda c: c.net.predict(torch.zeros(3, SIZE, SIZE, dtype=torch.int64)), IMAGE, r"tensor image must be float"),
    Bad("nan-tensor-saliency", lambda c: c.net.saliency(torch.full((3, SIZE, SIZE), NAN), 0), IMAGE, r"contains NaN or infinite values; clean it with torch\.nan_to_num"),
    Bad("inf-tensor-tree", lambda c: c.net.contribution_tree(torch.full((3, SIZE, SIZE), float("inf")), 0), IMAGE, r"NaN or infinite"),
    Bad("nan-array-occlusion", lambda c: c.net.occlusion(np.full((SIZE, SIZE, 3), NAN, np.float32), 0, window=8, stride=8), IMAGE, r"NaN or infinite values; clean it with np\.nan_to_num"),
    Bad("nan-in-scan", lambda c: c.net.scan([c.image, torch.full((3, SIZE, SIZE), NAN)], layers=["relu2"], progress=False), IMAGE, r"NaN"),
    Bad("no-resize-image-too-small", lambda c: c.cifar.predict(Image.new("RGB", (8, 8))), IMAGE, r"cannot run on an input of shape \[3, 8, 8\].*resize images to 32x32"),
    Bad("no-resize-image-too-big", lambda c: c.cifar.saliency(Image.new("RGB", (48, 40)), 0), IMAGE, r"\[3, 40, 48\].*resize images to 32x32"),
    Bad("no-resize-image-1x1", lambda c: c.cifar.occlusion(Image.new("RGB", (1, 1)), 0, window=1, stride=1), IMAGE, r"image of 1x1 pixels is too small; it needs at least 2x2 pixels"),
    Bad("image-1x1-pil-as-array", lambda c: c.net.predict(Image.new("RGB", (1, 1))), IMAGE, r"too small; it needs at least 2x2 pixels"),
    Bad("image-1x1-array-as-pil", lambda c: c.net.predict(np.zeros((1, 1, 3), np.uint8)), IMAGE, r"too small; it needs at least 2x2 pixels"),
    Bad("image-1-row-pil", lambda c: c.net.predict(Image.new("RGB", (16, 1))), IMAGE, r"image of 16x1 pixels is too small"),
    # ---------------------------------------------------------------- models and network options
    Bad("model-without-convolutions", lambda c: cw.Network(nn.Sequential(nn.Flatten(), nn.Linear(12, 3))), MODEL, r"has no convolution layers; cnn_widgets explores CNNs"),
    Bad("model-not-a-module", lambda c: cw.Network(lambda x: x), MODEL, r"Network needs a torch\.nn\.Module, got function"),
    Bad("model-conv-never-runs", lambda c: cw.Network(ConvNotUsed(), preprocess=RESIZE).layers, MODEL, r"no convolution layer that runs in its forward pass"),
    Bad("dict-output-without-selector", lambda c: c.dict_net.predict(c.image), MODEL, r"dict with keys \['aux', 'scores'\].*output='aux'"),
    Bad("dict-output-saliency", lambda c: c.dict_net.saliency(c.image, 0), MODEL, r"output="),
    Bad("output-key-missing", lambda c: cw.Network(DictOut(), preprocess=RESIZE, output="logits").predict(c.image), MODEL, r"output='logits' does not select anything.*'aux', 'scores'"),
    Bad("output-callable-raises", lambda c: cw.Network(DictOut(), preprocess=RESIZE, output=lambda o: o["x"]).predict(c.image), MODEL, r"output=.* raised KeyError"),
    Bad("output-callable-not-tensor", lambda c: cw.Network(DictOut(), preprocess=RESIZE, output=lambda o: 3).predict(c.image), MODEL, r"must be a tensor \[N, classes\]; got a int"),
    Bad("output-per-pixel-map", lambda c: cw.Network(SegOut(), preprocess=RESIZE).predict(c.image), MODEL, r"a map per channel, not one score per class; pass output=lambda out: out\.mean"),
    Bad("one-channel-model-rgb-preprocess", lambda c: cw.Network(cifar(1)).layers, MODEL, r"to have 1 channels, but got 3"),
    Bad("no-image-no-input-size", lambda c: cw.Network(cifar(), preprocess=T.ToTensor()).layers, MODEL, r"pass input_size=\(H, W\)"),
    Bad("input-size-0", lambda c: cw.Network(cifar(), input_size=0), OPTION, r"input_size height must be a positive integer, got 0"),
    Bad("input-size-one-of-two", lambda c: cw.Network(cifar(), input_size=(32,)), OPTION, r"input_size must be an int or \(height, width\), got \(32,\)"),
    Bad("input-size-string", lambda c: cw.Network(cifar(), input_size="32"), OPTION, r"input_size must be an int or \(height, width\), got '32'"),
    Bad("preprocess-not-callable", lambda c: cw.Network(cifar(), preprocess=5), OPTION, r"preprocess must be a callable from an RGB PIL image to a tensor"),
    Bad("preprocess-returns-image", lambda c: cw.Network(cifar(), preprocess=lambda im: im).predict(c.image), IMAGE, r"preprocess must return a tensor \[C, H, W\], got Image"),
    Bad("labels-string", lambda c: cw.Network(cifar(), labels="abc"), OPTION, r"labels must be a list of class names, one per output, got 'abc'"),
    Bad("labels-count", lambda c: cw.Network(Small(), preprocess=RESIZE, labels=["cat"]).predict(c.image), OPTION, r"labels has 1 name but Small outputs 3 classes"),
    Bad("model-torchscript", lambda c: cw.Network(quiet(lambda: torch.jit.script(Small()))), MODEL, r"RecursiveScriptModule of Small is a TorchScript module.*cannot run inside TorchScript\. Pass the eager nn\.Module it was scripted or traced from"),
    Bad("model-traced", lambda c: cw.Network(quiet(lambda: torch.jit.trace(Small(), torch.zeros(1, 3, SIZE, SIZE)))), MODEL, r"TopLevelTracedModule of Small is a TorchScript module"),
    Bad("model-scripted-submodule", lambda c: cw.Network(with_part(torch.jit.script)), MODEL, r"Small\.block is a TorchScript module \(RecursiveScriptModule of Residual\).*eager module at 'block'"),
    Bad("model-compiled-submodule", lambda c: cw.Network(with_part(torch.compile)), MODEL, r"Small\.block was compiled \(torch\.compile\).*torch\.compile\(model\)"),
    # ---------------------------------------------------------------- feature visualisation (issue 27)
    Bad("visualize-layer-typo", lambda c: c.net.visualize("relu3", steps=1, progress=False), TARGET, r"'relu3' is neither a layer nor a class label of Small; did you mean layer 'relu2'"),
    Bad("visualize-label-typo", lambda c: c.net.visualize("dgo", steps=1, progress=False), TARGET, r"'dgo' is neither a layer nor a class label.*class 'dog'"),
    Bad("visualize-callback-not-callable", lambda c: c.net.visualize(0, steps=1, callback=5, progress=False), OPTION, r"callback must be a function callback\(step, frame, objective\) or None, got int 5"),
    Bad("visualize-callback-raises", lambda c: c.net.visualize(0, steps=2, every=1, callback=lambda *a: {}["x"], progress=False), OPTION, r"the callback callback\(step, frame, objective\) raised KeyError: 'x'"),
    Bad("visualize-show-start-callback-raises", lambda c: c.net.visualize(0, steps=2, show_start=True, callback=lambda *a: 1 / 0, progress=False), OPTION, r"raised ZeroDivisionError"),
    Bad("dream-callback-not-callable", lambda c: c.net.dream(c.image, "relu2", octaves=1, steps=1, callback="print", progress=False), OPTION, r"callback must be a function callback\(octave, frame, objective\) or None, got str 'print'"),
    Bad("dream-callback-raises", lambda c: c.net.dream(c.image, "relu2", octaves=1, steps=1, callback=lambda *a: [][1], progress=False), OPTION, r"the callback callback\(octave, frame, objective\) raised IndexError"),
    Bad("visualize-zero-direction", lambda c: c.net.visualize(cw.Direction("relu2", torch.zeros(6)), steps=1, progress=False), TARGET, r"the direction in 'relu2' is all zeros: it points nowhere"),
    Bad("saliency-zero-direction", sal(lambda: cw.Direction("relu2", np.zeros(6))), TARGET, r"all zeros"),
    Bad("visualize-zero-row-of-a-batch", lambda c: c.net.visualize(cw.Direction("relu2", torch.tensor([[1.0] * 6, [0.0] * 6])), steps=1, progress=False), TARGET, r"all zeros \(row 1 of the batch\)"),
]

#: Python errors by design: a Direction is immutable as a frozen dataclass (Unit) is
FROZEN = [
    ("direction-assign-layer", lambda d: setattr(d, "layer", "stem"), r"cannot assign to field 'layer': a Direction is immutable; make a new one"),
    ("direction-assign-vector", lambda d: setattr(d, "vector", torch.ones(6)), r"cannot assign to field 'vector'"),
    ("direction-delete-name", lambda d: delattr(d, "name"), r"cannot delete field 'name'"),
]


def state(net: cw.Network):
    model = net.model
    return (
        hook_count(model),
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        {k: v.detach().clone() for k, v in model.state_dict().items()},
    )


def assert_same(before, after):
    assert after[:3] == before[:3], "a hook, training flag or requires_grad flag changed"
    assert after[3].keys() == before[3].keys() and all(torch.equal(after[3][k], v) for k, v in before[3].items())


def test_the_table_has_no_duplicate_ids():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.id, marks=pytest.mark.xfail(strict=True, reason=case.xfail)) if case.xfail else pytest.param(case, id=case.id)
    for case in CASES
])
def test_bad_input(ctx: Ctx, case: Bad):
    nets = [ctx.net, ctx.cifar, ctx.gray, ctx.dict_net]
    before = [state(net) for net in nets]
    with pytest.raises(case.error, match=case.match) as info:
        case.call(ctx)
    assert isinstance(info.value, cw.CnnWidgetsError)  # one base class users can catch
    for net, snapshot in zip(nets, before):
        assert_same(snapshot, state(net))
        assert all(p.grad is None for p in net.model.parameters())
    assert torch._C._len_torch_function_stack() == 0
    assert ctx.net.predict(ctx.image, k=1)  # and the network still works


@pytest.mark.parametrize("change, match", [pytest.param(c, m, id=i) for i, c, m in FROZEN])
def test_direction_is_frozen_like_unit(change, match):
    import dataclasses

    direction = cw.Direction("relu2", torch.ones(6), name="d")
    with pytest.raises(dataclasses.FrozenInstanceError, match=match):
        change(direction)
    assert direction.layer == "relu2" and torch.equal(direction.vector, torch.ones(6)) and direction.name == "d"
    with pytest.raises(dataclasses.FrozenInstanceError):  # the same error as Unit's
        cw.Unit("relu2", 0).layer = "stem"
