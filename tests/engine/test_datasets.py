"""Offline datasets and the digits CNN: determinism, offline-ness, accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnn_widgets as cw
from cnn_widgets.engine import datasets
from cnn_widgets.engine.digits_model import digits_cnn, train_digits_model


pytestmark = pytest.mark.usefixtures("one_thread")




def test_digits_split_is_deterministic_stratified_and_disjoint(no_network):
    a, b = datasets.digits(), datasets.digits()
    assert len(a.train) == 1347 and len(a.test) == 450
    np.testing.assert_array_equal(a.train.indices, b.train.indices)
    assert not set(a.train.indices) & set(a.test.indices)
    assert sorted(set(a.train.indices) | set(a.test.indices)) == list(range(1797))
    counts = np.bincount(a.test.targets.numpy(), minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # stratified: ~45 of each digit
    other = datasets.digits(seed=1)
    assert not np.array_equal(other.test.indices, a.test.indices)
    from sklearn.datasets import load_digits

    raw = load_digits()
    i = 17
    np.testing.assert_allclose(a.test.images[i].numpy(), raw.images[a.test.indices[i]] / 16.0)
    assert int(a.test.targets[i]) == raw.target[a.test.indices[i]]
    image, label = a.test[i]
    assert isinstance(image, Image.Image) and image.size == (8, 8) and label == raw.target[a.test.indices[i]]
    np.testing.assert_array_equal(np.asarray(image), np.round(raw.images[a.test.indices[i]] / 16 * 255).astype(np.uint8))
    assert a.test.images.dtype == torch.float32 and a.test.images.min() >= 0 and a.test.images.max() <= 1


def test_photos_are_offline_rgb_and_real(no_network):
    photos = datasets.photos()
    assert {"chelsea", "coffee", "rocket", "astronaut", "hubble_deep_field", "immunohistochemistry",
            "colorwheel", "camera", "coins"} <= set(photos.names)
    assert len(photos) >= 20
    for i in range(len(photos)):
        image = photos[i]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and min(image.size) >= 25
    np.testing.assert_array_equal(np.asarray(photos.image("chelsea")), np.asarray(cw.sample_image("cat")))
    colour = datasets.photos(grayscale=False)
    assert "camera" not in colour.names and "chelsea" in colour.names
    with pytest.raises(cw.ImageError, match="unknown photo"):
        datasets.photos(names=["kidney"])  # a download-on-demand image of scikit-image: refused


def test_faces_subset(no_network):
    faces = datasets.faces()
    assert len(faces) == 200
    image, label = faces[0]
    assert image.size == (25, 25) and image.mode == "RGB" and label == 1
    assert faces[150][1] == 0 and sum(faces.targets) == 100


def test_augmented_photos_are_deterministic_and_varied(no_network):
    a = datasets.augmented_photos(n=40, seed=0, size=64)
    b = datasets.augmented_photos(n=40, seed=0, size=64)
    c = datasets.augmented_photos(n=40, seed=1, size=64)
    assert len(a) == 40 and a[0].size == (64, 64) and a[0].mode == "RGB"
    # reading order does not matter: item i depends on (seed, i) only
    for i in (39, 0, 17):
        np.testing.assert_array_equal(np.asarray(a[i]), np.asarray(b[i]))
    assert not np.array_equal(np.asarray(a[5]), np.asarray(c[5]))
    pixels = np.stack([np.asarray(a[i]) for i in range(40)])
    assert len({p.tobytes() for p in pixels}) == 40  # all different
    assert {a.params(i)["flip"] for i in range(40)} == {True, False}
    assert a.targets[:3] == [0, 1, 2] and a.classes[a.targets[0]] == a.params(0)["photo"]
    default = datasets.augmented_photos()
    assert len(default) == 300 and default[299].size == (256, 256)


def test_every_dataset_recipe_names_its_registry_factory_with_plain_arguments(no_network):
    made = [datasets.photos(names=["chelsea", "camera"]), datasets.augmented_photos(n=3, seed=2, size=32),
            datasets.faces(), datasets.digits(seed=1).train, datasets.digits(seed=1).test]
    for dataset in made:
        name, kwargs = dataset.recipe
        assert datasets.DATASETS[name] is getattr(datasets, name)
        assert json.loads(json.dumps(kwargs)) == kwargs  # plain data, saved as it is
        again = datasets.DATASETS[name](**kwargs)
        assert type(again) is type(dataset) and len(again) == len(dataset)
        for i in (0, len(dataset) - 1):
            a, b = dataset[i], again[i]
            a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(cw.OptionError, match="split must"):
        datasets.digits_split("__class__")


def test_digits_cnn_accuracy_determinism_and_cache():
    rng_before = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    net = digits_cnn()
    assert net.test_accuracy >= 0.95
    assert net.labels == [str(d) for d in range(10)]
    assert digits_cnn() is net  # cached in-process
    # the caller's global RNG and settings are untouched
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()

    model, accuracy = train_digits_model(seed=0)  # a second training from scratch
    assert accuracy == net.test_accuracy
    for (name, p), q in zip(net.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(p, q), name

    # the network's own preprocessing gives the same accuracy on PIL images and on arrays
    test = datasets.digits().test
    pil_correct = sum(net.predict(test[i][0], k=1)[0].index == test[i][1] for i in range(0, 450, 9))
    arrays = [test.images[i].numpy() for i in range(0, 450, 9)]  # float in [0, 1]
    array_correct = sum(net.predict(x, k=1)[0].index == int(test.targets[i])
                        for x, i in zip(arrays, range(0, 450, 9)))
    assert pil_correct >= 47 and array_correct == pil_correct


def test_digits_scan_gives_class_structure():
    net = digits_cnn()
    from cnn_widgets.engine.scan import scan

    result = scan(net, datasets.digits().test, progress=False)
    assert result.complete and result.labels.shape == (450,)
    coords = result.embedding("relu2", method="pca")  # the default scan shows pool2 through relu2
    # digit classes form clusters: class centroids are farther apart than the spread within a class
    centroids = np.stack([coords[result.labels == d].mean(axis=0) for d in range(10)])
    within = np.mean([coords[result.labels == d].std(axis=0).mean() for d in range(10)])
    between = np.mean([np.linalg.norm(a - b) for a in centroids for b in centroids if a is not b])
    assert between > within
