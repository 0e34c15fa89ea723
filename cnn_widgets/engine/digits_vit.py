"""A tiny vision transformer trained on scikit-learn's digits in seconds on a CPU: the offline ViT
beside the digits CNN (no pretrained ViT weights ship with any package this project may install).

timm's ``VisionTransformer``: the ``[3, 16, 16]`` digit (as for :func:`~.digits_model.digits_cnn`)
cut into a 4x4 grid of 4x4-pixel patches, a class token, 4 blocks of width 48 with 3 attention
heads, the head on the class token. Trained as the digits CNN is (Adam, cosine decay, seeded,
deterministic, one thread); about 95% test accuracy after 30 epochs (about 20 s).
"""

from __future__ import annotations

import functools

from torch import nn

from .digits_model import DIGITS_SIZE, digits_preprocess, train_digits_model
from .network import Network

#: the training of :func:`digits_vit` (a transformer wants a smaller rate and more epochs than the CNN)
VIT_EPOCHS, VIT_LR = 30, 3e-3


def digits_vit_architecture() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=DIGITS_SIZE, patch_size=4, num_classes=10, embed_dim=48, depth=4, num_heads=3,
                             mlp_ratio=2.0)


@functools.lru_cache(maxsize=2)
def _cached(seed: int, epochs: int) -> Network:
    model, accuracy = train_digits_model(seed=seed, epochs=epochs, lr=VIT_LR, architecture=digits_vit_architecture)
    net = Network(model, preprocess=digits_preprocess(), labels=[str(d) for d in range(10)], name="DigitsViT")
    net.test_accuracy = accuracy
    net.train_seed = seed
    return net


def digits_vit(seed: int = 0, epochs: int = VIT_EPOCHS, fresh: bool = False) -> Network:
    """A tiny vision transformer trained on scikit-learn's digits (the digits CNN's data and preprocessing).

    Deterministic for a given ``seed`` and cached in-process (``fresh=True`` retrains into a new
    object); ``net.test_accuracy`` is its held-out accuracy. Its blocks are explorable layers
    (``blocks.0`` ... ``blocks.3``: 48 channels on the 4x4 patch grid; ``blocks.3:tokens``: the class
    token), and it has attention maps and attention rollout (``net.attention``).
    """
    if fresh:
        return _cached.__wrapped__(int(seed), int(epochs))
    return _cached(int(seed), int(epochs))
