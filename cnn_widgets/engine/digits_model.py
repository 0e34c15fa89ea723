"""A small CNN trained on scikit-learn's digits in seconds on a CPU (the lecture model of a "visualizing ConvNets" course notebook).

Architecture (``nn.Sequential`` with named layers, so units read ``cw.Unit("conv2", 5)``)::

    input [N, 3, 16, 16]   (the 8x8 digit upsampled bilinearly, gray replicated to RGB)
    conv1 3->16, 3x3 pad 1 -> relu1 -> pool1 (max 2x2)      16 x 8 x 8
    conv2 16->32, 3x3 pad 1 -> relu2 -> pool2 (max 2x2)     32 x 4 x 4
    flatten -> fc 512->10

Training is deterministic: a fixed seed drives the initialisation and the batch order through a
private generator (the caller's global RNG state is restored afterwards), the data are fixed
tensors and ``torch.use_deterministic_algorithms`` is switched on for the duration.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from .checks import check_bool
from .datasets import digits
from .network import Network

DIGITS_SIZE = 16
DIGITS_MEAN = (0.5, 0.5, 0.5)
DIGITS_STD = (0.5, 0.5, 0.5)


def digits_preprocess(size: int = DIGITS_SIZE):
    """PIL image (any mode) or array -> ``[3, size, size]``: grayscale, bilinear resize, normalise.

    Digits are white-on-black like scikit-learn's (ink = bright). Pass arrays as uint8 0..255 or
    float 0..1 (scikit-learn's raw 0..16 values need ``/ 16``).
    """
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Grayscale(num_output_channels=3),
            T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
            T.ToTensor(),
            T.Normalize(DIGITS_MEAN, DIGITS_STD),
        ]
    )


def digits_architecture() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 16, 3, padding=1)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(16, 32, 3, padding=1)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc", nn.Linear(32 * (DIGITS_SIZE // 4) ** 2, 10)),
            ]
        )
    )


def _tensors(dataset, preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([preprocess(dataset.pil(i)) for i in range(len(dataset))])
    return images, dataset.targets.clone()


def train_digits_model(seed: int = 0, epochs: int = 8, batch_size: int = 64, lr: float = 1e-2,
                       shuffled_labels: bool = False, architecture=digits_architecture) -> tuple[nn.Module, float]:
    """Train the digits CNN (or another ``architecture()`` on the same data) from scratch; return
    ``(model in eval mode, test accuracy)``.

    Adam with a cosine-decayed learning rate, cross-entropy, batches drawn by a seeded generator.
    ``shuffled_labels``: the training labels are permuted (seeded by ``seed``) first, so the model
    can only memorise -- the data-randomisation test of Adebayo et al. (2018) compares its saliency
    maps with the properly trained model's.
    """
    data = digits()
    preprocess = digits_preprocess()
    x_train, y_train = _tensors(data.train, preprocess)
    if shuffled_labels:
        y_train = y_train[torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed + 10_007))]
    x_test, y_test = _tensors(data.test, preprocess)

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    # One thread: tiny ops are far faster without thread hand-offs (and the bits do not depend on
    # the machine's core count).
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            model = architecture()
            generator = torch.Generator().manual_seed(seed)
            optimiser = torch.optim.Adam(model.parameters(), lr=lr)
            steps = epochs * ((len(y_train) + batch_size - 1) // batch_size)
            # cosine decay to zero: the last epochs settle instead of bouncing between minima
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
            loss_fn = nn.CrossEntropyLoss()
            model.train()
            with torch.enable_grad():
                for _ in range(epochs):
                    order = torch.randperm(len(y_train), generator=generator)
                    for start in range(0, len(order), batch_size):
                        batch = order[start : start + batch_size]
                        optimiser.zero_grad(set_to_none=True)
                        loss = loss_fn(model(x_train[batch]), y_train[batch])
                        loss.backward()
                        optimiser.step()
                        schedule.step()
            model.eval()
            with torch.no_grad():
                accuracy = float((model(x_test).argmax(1) == y_test).double().mean())
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=warn_only)
            torch.set_num_threads(threads)
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None  # the last training step's gradients are no part of the model handed out
    return model, accuracy


@functools.lru_cache(maxsize=4)
def _cached(seed: int, epochs: int, shuffled_labels: bool = False) -> Network:
    lr = SHUFFLED_LR if shuffled_labels else 1e-2
    model, accuracy = train_digits_model(seed=seed, epochs=epochs, lr=lr, shuffled_labels=shuffled_labels)
    name = "DigitsCNN (shuffled labels)" if shuffled_labels else "DigitsCNN"
    net = Network(model, preprocess=digits_preprocess(), labels=[str(d) for d in range(10)], name=name)
    net.test_accuracy = accuracy
    net.train_seed = seed
    return net


#: Shuffled labels train longer and slower: at the normal rate (1e-2) the network's ReLUs all die and
#: it answers a constant (every gradient exactly zero, measured); at 3e-3 for 30 epochs (8 s) it
#: memorises, with 6% test accuracy (chance: 10%).
SHUFFLED_LR, SHUFFLED_EPOCHS = 3e-3, 30


def digits_cnn(seed: int = 0, epochs: int | None = None, fresh: bool = False, shuffled_labels: bool = False) -> Network:
    """A small CNN trained on scikit-learn's digits (train split of :func:`cw.datasets.digits`).

    Trains in a few seconds on a CPU, deterministically for a given ``seed``; the result is cached
    in-process, so later calls return the same :class:`Network` at once (``fresh=True`` retrains
    into a new object). ``net.test_accuracy`` is the accuracy on the held-out test split (about
    98-99%). Labels are "0".."9"; ``net.preprocess`` takes PIL images or arrays of digits (any
    size, white ink on black, like scikit-learn's) and gives ``[3, 16, 16]``.

    ``shuffled_labels=True`` trains the same network on randomly permuted training labels (test
    accuracy near chance): the model of the data-randomisation test of saliency maps (Adebayo et
    al. 2018), trained with :data:`SHUFFLED_LR` for :data:`SHUFFLED_EPOCHS` epochs unless
    ``epochs`` is given. Compare ``net.saliency`` of both with :func:`cnn_widgets.engine.sanity.similarity`.
    """
    shuffled_labels = check_bool("shuffled_labels", shuffled_labels)
    if epochs is None:  # 8, or SHUFFLED_EPOCHS
        epochs = SHUFFLED_EPOCHS if shuffled_labels else 8
    if fresh:
        return _cached.__wrapped__(int(seed), int(epochs), shuffled_labels)
    return _cached(int(seed), int(epochs), shuffled_labels)


def digits_arrays_to_images(array: np.ndarray) -> list:
    """scikit-learn's raw digit arrays (values 0..16, ``[n, 8, 8]`` or ``[n, 64]``) as PIL images."""
    from PIL import Image

    array = np.asarray(array, dtype=np.float64).reshape(-1, 8, 8)
    return [Image.fromarray((np.clip(a / 16.0, 0, 1) * 255).round().astype(np.uint8), mode="L") for a in array]
