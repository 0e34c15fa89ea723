"""Images as users bring them: 16-bit and float PNGs, phone photos, broken files, wrong tensor layouts.

Every odd file is generated in ``tmp_path`` (nothing is downloaded), and each result is compared
with an expectation computed independently in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import cnn_widgets as cw
from cnn_widgets.engine.errors import ImageError
from cnn_widgets.engine.images import model_input, to_rgb_image


def rgb(image) -> np.ndarray:
    out = to_rgb_image(image)
    assert out.mode == "RGB"
    return np.asarray(out).astype(np.int64)


def gradient16(height: int = 16, width: int = 64) -> np.ndarray:
    """A horizontal 16-bit ramp over the whole 0..65535 range (uint16)."""
    row = np.linspace(0, 65535, width).round().astype(np.uint16)
    return np.tile(row, (height, 1))


# ------------------------------------------------------------------ bit depths and modes


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_is_scaled_not_clipped(mode):
    values = gradient16()
    if mode == "I;16":
        image = Image.fromarray(values)
    elif mode == "I;16B":
        image = Image.fromarray(values.astype(">u2"))
    else:
        image = Image.fromarray(values.astype(np.int32))
    assert image.mode == mode
    out = rgb(image)
    expected = values.astype(np.int64) * 255 // 65535
    assert np.abs(out - expected[..., None]).max() <= 1
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert (out < 250).mean() > 0.9  # the old conversion clipped nearly all of it to white


def test_sixteen_bit_png_file(tmp_path):
    values = gradient16()
    path = tmp_path / "depth16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # PIL really reads it back as 16-bit
    expected = values.astype(np.int64) * 255 // 65535
    assert np.abs(rgb(path) - expected[..., None]).max() <= 1


def test_mode_i_with_8_bit_values_is_kept():
    values = np.arange(0, 256, dtype=np.int32).reshape(16, 16)
    np.testing.assert_array_equal(rgb(Image.fromarray(values))[..., 0], values)


def test_float_mode_unit_range_is_taken_as_is():
    values = np.linspace(0, 1, 16 * 32, dtype=np.float32).reshape(16, 32)
    out = rgb(Image.fromarray(values))
    assert np.abs(out[..., 1] - values * 255).max() <= 0.5 + 1e-6
    assert out.max() == 255  # the old conversion made this black (0..1 -> 0 or 1 of 255)


def test_float_mode_other_range_is_min_max_scaled():
    values = np.linspace(-3, 500, 16 * 32, dtype=np.float32).reshape(16, 32)
    out = rgb(Image.fromarray(values))
    expected = (values - values.min()) / (values.max() - values.min()) * 255
    assert np.abs(out[..., 0] - expected).max() <= 0.5 + 1e-3


def test_float_mode_with_nan_is_refused():
    values = np.ones((8, 8), np.float32)
    values[2, 3] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        to_rgb_image(Image.fromarray(values))


def test_float_array_with_nan_is_refused():
    values = np.full((8, 8, 3), 0.5)
    values[0, 0, 1] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        to_rgb_image(values)


# ------------------------------------------------------------------ orientation


def marked(width: int = 40, height: int = 20) -> np.ndarray:
    """An asymmetric picture: a red top-left corner block and a green bottom row."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:5, :10] = (255, 0, 0)
    a[-1, :] = (0, 255, 0)
    return a


# EXIF orientation tag -> what the stored pixels must undergo to be seen upright
ORIENTATIONS = {
    3: lambda a: np.rot90(a, 2),
    6: lambda a: np.rot90(a, -1),  # rotate 90 degrees clockwise
    8: lambda a: np.rot90(a, 1),
    2: lambda a: a[:, ::-1],
}


@pytest.mark.parametrize("tag", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied_to_files_and_pil_images(tmp_path, tag):
    stored = marked()
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = tag
    path = tmp_path / f"phone{tag}.png"
    image.save(path, exif=exif)
    expected = ORIENTATIONS[tag](stored)
    np.testing.assert_array_equal(rgb(path), expected)
    with Image.open(path) as opened:
        np.testing.assert_array_equal(rgb(opened), expected)
        upright = to_rgb_image(opened)
    # the result carries no orientation any more: converting it again does not turn it twice
    np.testing.assert_array_equal(rgb(upright), expected)


def test_exif_orientation_in_a_jpeg(tmp_path):
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :32] = 255  # left half white
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    out = rgb(path)
    assert out.shape == (64, 32, 3)
    assert out[:24].mean() > 240 and out[40:].mean() < 15  # the left half is now on top


# ------------------------------------------------------------------ empty, huge and broken files


@pytest.mark.parametrize("size", [(0, 0), (0, 5), (7, 0)])
def test_empty_image_is_refused(size):
    with pytest.raises(ImageError, match="empty"):
        to_rgb_image(Image.new("RGB", size))


def test_decompression_bomb_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 pixels is now more than twice the limit
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS") as info:
        to_rgb_image(path)
    assert "too large" in str(info.value) and "Resize" in str(info.value)
    assert isinstance(info.value.__cause__, Image.DecompressionBombError)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match="cannot read"):
        to_rgb_image(path)


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    full = tmp_path / "full.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        to_rgb_image(path)


def test_broken_pil_image_object(tmp_path):
    rng = np.random.default_rng(1)
    full = tmp_path / "full.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    path = tmp_path / "cut.png"
    path.write_bytes(full.read_bytes()[:400])
    with Image.open(path) as opened:  # PIL decodes lazily: the damage shows on conversion
        with pytest.raises(ImageError, match="cannot read"):
            to_rgb_image(opened)


# ------------------------------------------------------------------ tensors: layout checked before the model


def rgb_preprocess(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.resize((24, 24)), dtype=np.float32) / 255).permute(2, 0, 1)


def gray_preprocess(image: Image.Image) -> torch.Tensor:
    return rgb_preprocess(image).mean(dim=0, keepdim=True)


def test_good_tensors_pass_through():
    x = torch.rand(3, 24, 24)
    assert model_input(x, rgb_preprocess) is not None
    torch.testing.assert_close(model_input(x, rgb_preprocess), x)
    torch.testing.assert_close(model_input(x[None], rgb_preprocess), x)
    g = torch.rand(1, 24, 24)
    torch.testing.assert_close(model_input(g, gray_preprocess), g)  # one-channel models keep [1, H, W]


def test_channels_last_tensor_is_refused_with_permute_hint():
    with pytest.raises(ImageError, match=r"permute\(2, 0, 1\)") as info:
        model_input(torch.rand(24, 24, 3), rgb_preprocess)
    assert "[3, H, W]" in str(info.value)


def test_channels_last_tensor_is_refused_without_a_usable_preprocess():
    def broken(image):
        raise RuntimeError("this preprocess only takes tensors")

    with pytest.raises(ImageError, match=r"permute\(2, 0, 1\)"):
        model_input(torch.rand(24, 24, 3), broken)
    torch.testing.assert_close(model_input(torch.rand(3, 24, 24), broken).shape, torch.Size([3, 24, 24]))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((1, 24, 24), r"\[3, H, W\]"), ((4, 3, 24, 24), "batch of 4"), ((24, 24), r"x\[None\]"), ((3, 24), r"\[C, H, W\]")],
)
def test_wrong_tensor_layouts_are_refused(shape, expected):
    with pytest.raises(ImageError, match=expected):
        model_input(torch.rand(shape), rgb_preprocess)


def test_tensor_with_nan_is_refused():
    x = torch.rand(3, 24, 24)
    x[1, 2, 3] = float("nan")
    with pytest.raises(ImageError, match="NaN"):
        model_input(x, rgb_preprocess)


def test_channels_last_tensor_never_reaches_the_model():
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            calls.append(tuple(x.shape))
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    net = cw.Network(Counting(), preprocess=rgb_preprocess)
    _ = net.layers  # shape discovery runs the model on its own probe image
    calls.clear()
    with pytest.raises(ImageError, match="permute"):
        net.predict(torch.rand(24, 24, 3))
    assert calls == []
