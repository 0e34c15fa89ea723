"""Scans never lose work and never load wrong numbers: failed saves, damaged files, hostile recipes.

* ``save_to`` in a missing or read-only folder is refused before the first image; a write that
  fails at the end (a full disk: a real 16 KiB tmpfs where this machine lets us mount one, else
  the kernel's ``/dev/full``) warns, returns the whole scan, keeps it as ``net.last_scan`` and
  leaves neither a temporary file nor a changed old file behind.
* An error that stops a pass carries the partial scan (``error.scan``), and resuming it equals one
  uninterrupted scan.
* A file with one flipped bit, a truncated one, or one whose counts and shapes disagree is
  refused with :class:`ScanError` naming what is wrong; it never loads.
* A recipe asking for 10**8 images, an empty name list or out-of-range sizes is refused before
  any dataset is built (memory measured with tracemalloc).

Oracles: a scan of the same images with no file involved (``assert_same_scan`` compares every
table), the kernel's own errors, and payloads edited by hand with ``torch.load`` / ``torch.save``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine import datasets
from cnn_widgets.engine.errors import ImageError, OptionError
from cnn_widgets.engine.scan import Scan, ScanError, ScanSaveWarning, scan
from cnn_widgets.engine.scan import storage
from scan_checks import assert_same_scan

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ helpers
def small_net():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    return cw.Network(model, preprocess=T.Compose([T.Resize((16, 16)), T.ToTensor()]))


def images(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 16, 16, generator=g) for _ in range(n)]


class Counted(Dataset):
    """Images that count how many were read (to show nothing was scanned), optionally failing at one index."""

    def __init__(self, items, fail_at=None):
        self.items, self.fail_at, self.reads = items, fail_at, 0

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.reads += 1
        if i == self.fail_at:
            raise ImageError(f"image {i} is unreadable")
        return self.items[i], i % 3


def quiet_scan(net, items, **kw):
    kw.setdefault("progress", False)
    return scan(net, items, **kw)



@pytest.fixture
def folder():
    # not tmp_path: concurrent pytest runs on a shared machine prune each other's numbered tmp dirs
    with tempfile.TemporaryDirectory(prefix="cw-scanfiles-") as name:
        yield Path(name)


def _mount_tmpfs(path: Path, options: str) -> bool:
    """Mount a tmpfs at ``path`` (root only, where the machine allows it)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@contextlib.contextmanager
def small_disk(folder: Path, kib: int):
    """A folder on a ``kib`` KiB tmpfs (yields it), or ``None`` where no mount is allowed."""
    disk = folder / "disk"
    disk.mkdir()
    if not _mount_tmpfs(disk, f"size={kib}k"):
        yield None
        return
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)])  # lazy: never left mounted by a failing test


@contextlib.contextmanager
def read_only_folder(folder: Path, monkeypatch):
    """A folder no file can be created in: a read-only tmpfs as root, ``chmod 555`` otherwise (and,
    as root where mounting is not allowed, file creation there failing with the kernel's EROFS)."""
    target = folder / "readonly"
    target.mkdir()
    if os.geteuid() == 0:
        if _mount_tmpfs(target, "ro,size=16k"):
            try:
                yield target
            finally:
                subprocess.run(["umount", "-l", str(target)])
            return
        real = storage.tempfile.mkstemp

        def read_only(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == target:
                raise OSError(30, "Read-only file system")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(storage.tempfile, "mkstemp", read_only)
        yield target
    else:
        target.chmod(0o555)
        try:
            yield target
        finally:
            target.chmod(0o755)


@contextlib.contextmanager
def disk_full_at(folder: Path, monkeypatch):
    """``folder`` where writing a scan runs out of space: a real 16 KiB tmpfs, else every scan
    file written goes to the kernel's ``/dev/full`` (each write fails with ENOSPC)."""
    with small_disk(folder, 16) as disk:
        if disk is not None:
            yield disk
            return
        real = os.fdopen

        def full(handle, mode="r", *args, **kwargs):
            if "w" in mode:
                os.close(handle)
                return open("/dev/full", mode)
            return real(handle, mode, *args, **kwargs)

        monkeypatch.setattr(storage.os, "fdopen", full)
        yield folder


# ------------------------------------------------------------------------------------------ saving
def test_a_missing_folder_is_refused_before_the_first_image(folder):
    net, items = small_net(), Counted(images())
    with pytest.raises(ScanError, match="does not exist.*Nothing was scanned"):
        quiet_scan(net, items, save_to=folder / "no" / "such" / "scan.pt")
    assert items.reads == 0
    with pytest.raises(ScanError, match="is a folder; give a file name"):
        quiet_scan(net, items, save_to=folder)
    assert items.reads == 0 and net.last_scan is None


def test_a_read_only_folder_is_refused_before_the_first_image(folder, monkeypatch):
    net, items = small_net(), Counted(images())
    with read_only_folder(folder, monkeypatch) as target:
        with pytest.raises(ScanError, match="cannot be written.*Read-only file system|cannot be written.*ermission"):
            quiet_scan(net, items, save_to=target / "scan.pt")
    assert items.reads == 0


def test_a_full_disk_at_the_end_keeps_the_scan_and_leaves_no_file(folder, monkeypatch):
    net = small_net()
    expected = quiet_scan(net, images(), k=4, batch_size=6)
    with disk_full_at(folder, monkeypatch) as disk:
        before = sorted(os.listdir(disk))
        with pytest.warns(ScanSaveWarning) as caught:
            result = quiet_scan(net, images(), k=4, batch_size=6, save_to=disk / "scan.pt")
        message = str(caught[0].message)
        assert str(disk / "scan.pt") in message and "No space left on device" in message
        assert sorted(os.listdir(disk)) == before  # neither scan.pt nor a temporary file
    assert result.complete and net.last_scan is result
    assert_same_scan(result, expected)
    result.save(folder / "elsewhere.pt")  # saved elsewhere it is the whole scan
    assert_same_scan(Scan.load(folder / "elsewhere.pt", net, images=images()), expected)


def test_a_failed_save_never_damages_the_file_already_there(folder, monkeypatch):
    """Atomic replace: a first (small) scan is saved; a larger one fails for space (a real 64 KiB
    tmpfs, else a writer failing half-way with ENOSPC); the first file is left byte for byte."""
    net = small_net()
    with small_disk(folder, 64) as disk:
        if disk is None:
            disk = folder

            def half_then_full(obj, file, *args, **kwargs):
                file.write(b"x" * 1000)
                raise OSError(28, "No space left on device")
        small = quiet_scan(net, images(2), k=1, layers=["1"], save_to=disk / "scan.pt")
        first = (disk / "scan.pt").read_bytes()
        if disk == folder:
            monkeypatch.setattr(storage.torch, "save", half_then_full)
        with pytest.warns(ScanSaveWarning, match="No space left on device"):
            quiet_scan(net, images(1500, seed=1), k=9, save_to=disk / "scan.pt")
        monkeypatch.undo()
        assert (disk / "scan.pt").read_bytes() == first
        assert sorted(os.listdir(disk)) == ["scan.pt"]
        assert_same_scan(Scan.load(disk / "scan.pt", net, images=images(2)), small)


def test_an_error_mid_scan_carries_the_partial_scan_and_resuming_it_equals_one_scan(folder):
    net = small_net()
    broken = Counted(images(), fail_at=13)  # batch 12..17 fails: images 0..11 are done
    with pytest.raises(ImageError, match="image 13 is unreadable") as caught:
        quiet_scan(net, broken, k=4, batch_size=6, save_to=folder / "partial.pt")
    partial = caught.value.scan
    assert isinstance(partial, Scan) and partial.count == 12 and net.last_scan is partial
    if sys.version_info >= (3, 11):  # exception notes
        assert "images 0..11 are done" in "".join(caught.value.__notes__)
    resumed = quiet_scan(net, Counted(images()), resume=partial)
    assert_same_scan(resumed, quiet_scan(net, Counted(images()), k=4, batch_size=6))
    # and the file saved when it stopped resumes the same way
    again = quiet_scan(net, Counted(images()), resume=folder / "partial.pt")
    assert_same_scan(again, resumed)


# ------------------------------------------------------------------------------------------ damaged files
def saved_scan(folder: Path, name="scan.pt"):
    net = small_net()
    result = quiet_scan(net, Counted(images()), k=4, batch_size=6, layers=["1", "3"])
    result.save(folder / name)
    return net, result, folder / name


def zip_entries(path: Path) -> dict[str, tuple[int, int]]:
    """``name -> (offset of its data in the file, size)`` for every stored entry of a torch zip file."""
    with zipfile.ZipFile(path) as archive:
        entries = {}
        raw = path.read_bytes()
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            name_len = int.from_bytes(raw[info.header_offset + 26: info.header_offset + 28], "little")
            extra_len = int.from_bytes(raw[info.header_offset + 28: info.header_offset + 30], "little")
            entries[info.filename] = (info.header_offset + 30 + name_len + extra_len, info.file_size)
    return entries


def flipped(path: Path, offset: int, bit: int, to: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    to.write_bytes(bytes(data))
    return to


def test_one_flipped_bit_in_any_tensor_is_refused(folder):
    net, result, path = saved_scan(folder)
    tensors = {n: e for n, e in zip_entries(path).items() if "/data/" in n and not n.endswith(".pkl")}
    assert len(tensors) >= 10  # every field of every layer is a stored tensor
    rng = np.random.default_rng(0)
    for name, (offset, size) in tensors.items():
        for position in sorted({0, size // 2, size - 1} | set(rng.integers(0, size, 2).tolist())):
            bad = flipped(path, offset + position, int(rng.integers(0, 8)), folder / "bad.pt")
            with pytest.raises(ScanError, match="damaged scan file.*does not match its checksum"):
                Scan.load(bad, net, images=images())


def test_a_flipped_bit_in_the_plain_fields_never_loads_other_numbers(folder):
    """Every byte of the pickled record (counts, names, labels, source, checksums) flipped in turn:
    the file is refused, or (a flip the format does not read, such as in a storage's device
    string) it loads the very same scan."""
    net, result, path = saved_scan(folder)
    entries = zip_entries(path)
    offset, size = next(e for n, e in entries.items() if n.endswith("data.pkl"))
    loaded = refused = 0
    for position in range(0, size, 3):
        bad = flipped(path, offset + position, position % 8, folder / "bad.pt")
        try:
            again = Scan.load(bad, net, images=images())
        except ScanError:
            refused += 1
            continue
        loaded += 1
        assert_same_scan(again, result)
    assert refused > 0.9 * (loaded + refused)


def test_truncated_and_foreign_files_are_refused_with_a_scan_error(folder):
    net, _, path = saved_scan(folder)
    raw = path.read_bytes()
    for length in (0, 10, len(raw) // 3, len(raw) // 2, len(raw) - 100, len(raw) - 1):
        (folder / "cut.pt").write_bytes(raw[:length])
        with pytest.raises(ScanError, match="not a cnn_widgets scan file, or it is damaged"):
            Scan.load(folder / "cut.pt", net)
    (folder / "noise.pt").write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(ScanError, match="damaged"):
        Scan.load(folder / "noise.pt", net)
    with pytest.raises(ScanError, match="is a folder"):
        Scan.load(folder, net)


def edited(path: Path, to: Path, edit, version=None) -> Path:
    """The file's payload changed by ``edit(payload)`` and saved again (``version`` set; checksums
    recomputed by a test-local copy of the rule when the version keeps them, dropped otherwise)."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    if version is not None:
        payload["version"] = version
        payload.pop("checksums", None)
    torch.save(payload, to)
    return to


CRAFTED = [
    ("count above total", lambda p: p.update(count=1000), "covers 1000 images of 20"),
    ("negative count", lambda p: p.update(count=-3), "not an integer of at least 0"),
    ("fewer images covered than labels", lambda p: p.update(count=12), "20 labels for 12 images"),
    ("k zero", lambda p: p.update(k=0), "not an integer of at least 1"),
    ("labels short", lambda p: p["labels"].pop(), "19 labels for 20 images"),
    ("codes one row short", lambda p: p["state"]["1"].update(codes=p["state"]["1"]["codes"][:-1]),
     r"codes of layer '1' has shape \(19, 6\), not \(20, 6\)"),
    ("top table of another k", lambda p: p["state"]["3"].update(top_values=p["state"]["3"]["top_values"][:, :3]),
     r"top_values of layer '3' has shape \(8, 3\), not \(8, 4\)"),
    ("wrong channel count", lambda p: p["state"]["3"].update(max=torch.zeros(9)), r"max of layer '3' has shape"),
    ("index past the images", lambda p: p["state"]["1"]["top_index"].__setitem__((0, 0), 57),
     "are not 4 image indices in 0..19"),
    ("index twice", lambda p: p["state"]["1"]["top_index"].__setitem__(
        (0, 1), int(p["state"]["1"]["top_index"][0, 0])), "ranks one image twice"),
    ("integer values", lambda p: p["state"]["1"].update(top_values=p["state"]["1"]["top_values"].long()),
     "top_values of layer '1' holds torch.int64"),
    ("position off the map", lambda p: p["state"]["1"]["top_y"].__setitem__((2, 0), 99), "outside its 16x16 map"),
    ("firing more than images", lambda p: p["state"]["3"]["firing"].__setitem__(0, 21), "exceed its 20 images"),
    ("unsorted top values", lambda p: p["state"]["1"]["top_values"].__setitem__((0, 3), 1e6), "descending"),
    ("missing layer state", lambda p: p["state"].pop("3"), "do not match the layer names"),
    ("source of other length", lambda p: p["source"].update(length=7), "source has 7 images, the scan 20"),
    ("no labels entry", lambda p: p.pop("labels"), "no 'labels' entry"),
]


@pytest.mark.parametrize("what, edit, message", CRAFTED, ids=[c[0] for c in CRAFTED])
@pytest.mark.parametrize("version", [2, 3])
def test_counts_and_shapes_that_disagree_are_refused(folder, what, edit, message, version):
    """Crafted as a version-2 file (no checksums: the consistency checks alone must refuse it) and
    as a version-3 file whose checksum no longer matches."""
    net, _, path = saved_scan(folder)
    bad = edited(path, folder / "bad.pt", edit, version=2 if version == 2 else None)
    expected = message if version == 2 else "does not match its checksum|match their checksums|checksum"
    with pytest.raises(ScanError, match=expected):
        Scan.load(bad, net, images=images())


def test_an_untouched_version_2_file_still_loads(folder):
    net, result, path = saved_scan(folder)
    old = edited(path, folder / "v2.pt", lambda p: None, version=2)
    assert_same_scan(Scan.load(old, net, images=images()), result)


# ------------------------------------------------------------------------------------------ recipes
def recipe_file(folder: Path, kwargs: dict, length, total=None, count=0, name="augmented_photos") -> Path:
    """A version-2 scan file of ``count`` images whose source is the dataset recipe ``name(**kwargs)``."""
    net = small_net()
    part = quiet_scan(net, datasets.augmented_photos(n=6, seed=1, size=16), k=2, layers=["1"])
    part.save(folder / "base.pt")
    total = length if total is None else total

    def edit(p):
        p["source"] = {"kind": "dataset", "name": name, "kwargs": kwargs, "length": length}
        p["total"] = total
        p["count"] = count
        p["labels"] = p["labels"][:count]
        for st in p["state"].values():
            st["codes"] = st["codes"][:count]
            if count == 0:
                st["top_values"].fill_(-float("inf"))
                st["top_index"].fill_(-1)
                st["top_y"].zero_(), st["top_x"].zero_(), st["zeros"].zero_(), st["firing"].zero_()
                st["code_sum"].zero_(), st["max"].fill_(-float("inf"))
    return edited(folder / "base.pt", folder / "recipe.pt", edit, version=2)


def peak_bytes(fn):
    tracemalloc.start()
    try:
        try:
            fn()
        except ScanError as exc:
            outcome = exc
        else:
            outcome = None
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


HOSTILE = [
    ({"n": 10**8, "seed": 1, "size": 16}, 6, "of 100000000 images, but says it has 6"),
    ({"n": 1e8, "seed": 1, "size": 16}, 6, "n must be a positive integer, got 100000000.0"),
    ({"n": 6, "seed": 1, "size": 16, "names": []}, 6, "names is empty"),
    ({"n": 6, "seed": 1, "size": 10**6}, 6, "size must be an integer between 8 and 4096"),
    ({"n": 6, "seed": -1, "size": 16}, 6, "seed must be an integer between 0"),
    ({"n": 6, "seed": 1, "size": 16, "scale": [0, 2]}, 6, r"scale\[0\] must be a number in \(0.0, 1.0\]"),
    ({"n": 6, "seed": 1, "size": 16, "scale": "ab"}, 6, "scale must be a pair"),
    ({"n": 6, "seed": 1, "size": 16, "names": "chelsea"}, 6, "names must be a list of photo names"),
    ({"n": 6, "seed": 1, "size": 16, "names": ["chelsea"] * 3 + ["nope"]}, 6, "unknown photo"),
]


@pytest.mark.parametrize("kwargs, length, message", HOSTILE, ids=[m[:24] for _, _, m in HOSTILE])
def test_a_hostile_recipe_is_refused_before_anything_is_built(folder, kwargs, length, message):
    path = recipe_file(folder, kwargs, length)
    peak, error = peak_bytes(lambda: Scan.load(path, small_net()))
    assert isinstance(error, ScanError)
    assert re.search(message, str(error)), str(error)
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB held while refusing"


def test_other_datasets_check_their_arguments_too(folder):
    for name, kwargs, message in [("photos", {"names": []}, "names is empty"),
                                  ("digits_split", {"split": "test", "test_fraction": 5}, "test_fraction must be"),
                                  ("digits_split", {"split": "test", "seed": 2**40}, "seed must be an integer"),
                                  ("digits_split", {"split": "all"}, "split must be one of")]:
        path = recipe_file(folder, kwargs, 6, name=name)
        with pytest.raises(ScanError, match=message):
            Scan.load(path, small_net())


def test_a_file_for_ten_billion_images_loads_in_bounded_memory(folder):
    """A real (if absurd) unstarted scan of 10**10 augmented photos: nothing of that size is made."""
    path = recipe_file(folder, {"n": 10**10, "seed": 1, "size": 16}, 10**10)
    box = {}
    peak, error = peak_bytes(lambda: box.setdefault("scan", Scan.load(path, small_net())))
    assert error is None and peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB"
    loaded = box["scan"]
    assert loaded.count == 0 and loaded.total == 10**10
    photo = loaded._source.item(10**10 - 1)  # the dataset is real: its last image can be made
    assert photo.size == (16, 16)


def test_datasets_refuse_bad_arguments_directly():
    with pytest.raises(OptionError, match="names is empty"):
        datasets.augmented_photos(n=3, names=[])
    with pytest.raises(OptionError, match="n must be a positive integer"):
        datasets.augmented_photos(n=0)
    big = datasets.augmented_photos(n=10**9, size=16)  # cheap: nothing per item is made up front
    assert len(big) == 10**9 and len(big.targets) == 10**9
    assert big.targets[10**9 - 1] == (10**9 - 1) % len(big.names)
    assert list(datasets.augmented_photos(n=5).targets) == [i % len(big.names) for i in range(5)]
