"""Probes of what a classification rests on: shuffled parts, a silhouette, no colour, no texture.

"Does it still say cat when the parts are shuffled?" Each probe edits the picture the model sees
(its input with the preprocess's ``Normalize`` steps undone, as uint8 pixels) and every edited
picture goes back through those same ``Normalize`` steps, so the model is shown exactly the pixels
in :attr:`Probe.images` -- no second resize or crop. All pictures go through the model in one
batched forward pass. The probes follow the lecture of seed 003 and notebook 03 (parts, silhouette,
texture), after Zeiler & Fergus (2014) and Geirhos et al., "ImageNet-trained CNNs are biased
towards texture" (ICLR 2019). Each probe changes more than one thing (tile edges, a white
background, a picture unlike any training photo): read each as the answer to a narrow question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .checks import check_choice, check_int
from .core import Prediction
from .errors import OptionError
from .hooks import inference_state
from .images import ImageLike
from .occlusion import occlusion_fill
from .preprocess import normalize_steps, pixels_to_input
from .targets import ClassTarget, Direction, Target, Unit

__all__ = ["BLUR_SIGMA", "LUMA", "PROBES", "Probe", "ProbeKind", "probe"]

#: ITU-R BT.601 luma weights (R, G, B), as ``T.Grayscale`` and PIL's ``"L"`` mode use.
LUMA = (0.299, 0.587, 0.114)
#: The blur's Gaussian sigma as a share of the picture's shorter side: notebook 03 blurred the
#: 224-pixel cat with sigma 8 px, enough to take its fur's stripes and the detail of its eyes.
BLUR_SIGMA = 8 / 224


def shuffle_tiles(pixels: np.ndarray, grid: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """``grid x grid`` tiles of ``H // grid x W // grid`` pixels moved by a seeded derangement.

    Output tile ``i`` (raster order) shows input tile ``order[i]``; for ``grid > 1`` no tile stays
    where it was (permutations drawn from ``numpy.random.default_rng(seed)`` until one moves every
    tile). When ``grid`` does not divide a side, the last ``H % grid`` rows / ``W % grid`` columns
    stay where they are. Returns the picture and ``order``.
    """
    h, w = pixels.shape[0] // grid, pixels.shape[1] // grid
    n = grid * grid
    rng = np.random.default_rng(seed)
    order = np.arange(n)
    while n > 1 and (order == np.arange(n)).any():
        order = rng.permutation(n)
    tiles = pixels[: grid * h, : grid * w].reshape(grid, h, grid, w, -1).swapaxes(1, 2).reshape(n, h, w, -1)
    out = pixels.copy()
    out[: grid * h, : grid * w] = tiles[order].reshape(grid, grid, h, w, -1).swapaxes(1, 2).reshape(grid * h, grid * w, -1)
    return out, [int(i) for i in order]


def border_colour(pixels: np.ndarray) -> np.ndarray:
    """The per-channel median of the picture's one-pixel frame ``[3]`` (each frame pixel once)."""
    frame = np.ones(pixels.shape[:2], bool)
    frame[1:-1, 1:-1] = False
    return np.median(pixels[frame].astype(np.float64), axis=0)


def otsu_threshold(values: np.ndarray) -> int | None:
    """Otsu's (1979) threshold of non-negative integers: the ``t`` maximising the between-class
    variance ``w0 w1 (mu0 - mu1)^2`` of ``values <= t`` against ``values > t`` (the first such ``t``);
    ``None`` when all values are equal (no split)."""
    counts = np.bincount(values.ravel()).astype(np.float64)
    if np.count_nonzero(counts) < 2:
        return None
    levels = np.arange(counts.size, dtype=np.float64)
    w0 = np.cumsum(counts)[:-1]  # pixels at or below t, for t = 0 .. max - 1
    w1 = counts.sum() - w0
    s0 = np.cumsum(counts * levels)[:-1]
    s1 = (counts * levels).sum() - s0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.where((w0 > 0) & (w1 > 0), w0 * w1 * (s0 / w0 - s1 / w1) ** 2, -1.0)
    return int(np.argmax(between))


def silhouette_mask(pixels: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool, True on the estimated object: pixels whose RGB distance from the border
    colour (:func:`border_colour`), rounded to an integer, lies above its Otsu threshold."""
    distance = np.rint(np.sqrt(((pixels.astype(np.float64) - border_colour(pixels)) ** 2).sum(-1))).astype(np.int64)
    threshold = otsu_threshold(distance)
    return np.zeros(distance.shape, bool) if threshold is None else distance > threshold


def _shuffle(pixels: np.ndarray, grid: int, seed: int) -> np.ndarray:
    return shuffle_tiles(pixels, grid, seed)[0]


def _silhouette(pixels: np.ndarray, grid: int, seed: int) -> np.ndarray:
    out = np.full_like(pixels, 255)
    out[silhouette_mask(pixels)] = 0
    return out


def _grey(pixels: np.ndarray, grid: int, seed: int) -> np.ndarray:
    # in integers, 1000 Y = 299 R + 587 G + 114 B, rounded half up: exact (floats round some .5 ties down)
    luma = (pixels.astype(np.int64) @ np.rint(np.array(LUMA) * 1000).astype(np.int64) + 500) // 1000
    return np.repeat(luma.astype(np.uint8)[..., None], 3, axis=-1)


def blur_sigma(shape: tuple[int, ...]) -> float:
    """The blur's sigma in pixels for a picture of ``shape`` (:data:`BLUR_SIGMA` of its shorter side)."""
    return BLUR_SIGMA * min(shape[:2])


def _blur(pixels: np.ndarray, grid: int, seed: int) -> np.ndarray:
    x = torch.from_numpy(pixels.astype(np.float64)).permute(2, 0, 1)[None]
    # the occlusion fill's Gaussian (radius ceil(3 sigma), borders replicated), with sigma = window / 4
    blurred = occlusion_fill(x, "blur", window=4 * blur_sigma(pixels.shape))[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def _texture(pixels: np.ndarray, grid: int, seed: int) -> np.ndarray:
    h, w = max(1, pixels.shape[0] // grid), max(1, pixels.shape[1] // grid)
    top, left = (pixels.shape[0] - h) // 2, (pixels.shape[1] - w) // 2
    patch = pixels[top: top + h, left: left + w]
    tiled = np.tile(patch, (-(-pixels.shape[0] // h), -(-pixels.shape[1] // w), 1))
    return np.ascontiguousarray(tiled[: pixels.shape[0], : pixels.shape[1]])


@dataclass(frozen=True)
class ProbeKind:
    """One probe: ``make(pixels [H, W, 3] uint8, grid, seed) -> pixels [H, W, 3] uint8``."""

    make: Callable[[np.ndarray, int, int], np.ndarray]
    description: str


#: The probes, the one place their names are listed (the order of the defaults).
PROBES: dict[str, ProbeKind] = {
    "shuffle": ProbeKind(_shuffle, "the parts, out of place: grid x grid tiles permuted by the seed, none left in place"),
    "silhouette": ProbeKind(_silhouette, "the shape alone: what differs from the border colour (Otsu), black on white"),
    "grey": ProbeKind(_grey, "no colour: ITU-R BT.601 luma in all three channels"),
    "blur": ProbeKind(_blur, "no fine texture: a Gaussian blur, sigma BLUR_SIGMA of the shorter side"),
    "texture": ProbeKind(_texture, "texture without the shape: the central 1/grid crop, tiled over the picture"),
}
DEFAULT_KINDS = ("shuffle", "silhouette", "grey", "blur")


@dataclass
class Probe:
    """What :func:`probe` found: each probed picture, its top classes and the target's probability.

    Attributes
    ----------
    kinds
        ``["original", *kinds]``, in the order given.
    images
        ``images[kind]``: the picture the model was shown, ``[H, W, 3]`` uint8 at the model's input size.
    top
        ``top[kind]``: the ``k`` most probable classes, best first (:class:`Prediction`, as ``net.predict``).
    target
        The class followed (a :class:`ClassTarget`): the original's top class for ``target=None``.
    probability
        ``probability[kind]``: the target's softmax probability on that picture.
    tile_order
        The shuffle's permutation (output tile ``i`` shows input tile ``tile_order[i]``, raster
        order), ``None`` when the shuffle was not probed.
    """

    kinds: list[str]
    images: dict[str, np.ndarray]
    top: dict[str, list[Prediction]]
    target: ClassTarget
    probability: dict[str, float]
    grid: int
    seed: int
    tile_order: list[int] | None = None

    def change(self, kind: str) -> float:
        """The target's probability on ``kind`` minus on the original."""
        return self.probability[kind] - self.probability["original"]

    def table(self) -> str:
        """One line per kind: the target's probability, its change from the original, the top-1 class."""
        width = max(len(k) for k in self.kinds)
        lines = [f"p({self.target.label}) [class {self.target.index}], grid {self.grid}, seed {self.seed}",
                 f"{'kind':<{width}}  p(target)  change   top-1"]
        for kind in self.kinds:
            best = self.top[kind][0]
            lines.append(f"{kind:<{width}}  {self.probability[kind]:9.4f}  {self.change(kind):+.4f}  "
                         f"{best.label} ({best.probability:.2f})")
        return "\n".join(lines)

    def figure(self):
        """A matplotlib figure: the pictures in a row, each titled with its top-1 class and p(target)."""
        import matplotlib.pyplot as plt

        n = len(self.kinds)
        fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.9), squeeze=False)
        short = self.target.label.split(",")[0]
        for ax, kind in zip(axes[0], self.kinds):
            best = self.top[kind][0]
            ax.imshow(self.images[kind], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{kind}\n{best.label.split(',')[0]} {best.probability:.2f}\np({short}) {self.probability[kind]:.2f}",
                         fontsize=8)
        fig.tight_layout()
        return fig


def _pixel_space(net, x: torch.Tensor) -> tuple[np.ndarray, Callable[[np.ndarray], torch.Tensor]]:
    """The picture the model sees, ``[H, W, 3]`` uint8, and the map from such pictures back to inputs.

    The pixels are ``x`` with the preprocess's ``Normalize`` steps undone (one channel shown as
    grey). Values outside ``[0, 1]`` then (a preprocess that normalises by other means, a tensor of
    other values) are stretched to it, and the map back undoes the stretch.
    """
    u = x[0].detach().cpu().double()
    for step in reversed(normalize_steps(net.preprocess)):
        u = u * torch.as_tensor(step.std, dtype=u.dtype).view(-1, 1, 1) + torch.as_tensor(step.mean, dtype=u.dtype).view(-1, 1, 1)
    lo, hi = 0.0, 1.0
    if float(u.min()) < -1e-3 or float(u.max()) > 1 + 1e-3:
        lo, hi = float(u.min()), max(float(u.max()), float(u.min()) + 1e-12)
    unit = ((u - lo) / (hi - lo)).clamp(0, 1)
    pixels = (unit * 255).round().to(torch.uint8).expand(3, -1, -1).permute(1, 2, 0).numpy().copy()
    channels = x.shape[1]

    def to_input(pictures: np.ndarray) -> torch.Tensor:
        p = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255
        p = p if (lo, hi) == (0.0, 1.0) else lo + p * (hi - lo)
        return pixels_to_input(p, net.preprocess, channels).to(device=net.device, dtype=net.dtype)

    return pixels, to_input


def _check_kinds(kinds) -> list[str]:
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for kind in kinds:
        if kind == "original":
            raise OptionError("kinds need not name 'original': the original picture is always the first row")
        check_choice("kind", kind, PROBES)
    if len(set(kinds)) != len(kinds):
        raise OptionError(f"kinds name a probe more than once: {kinds}")
    return kinds


def probe(net, image: ImageLike, target: Target = None, kinds: Sequence[str] = DEFAULT_KINDS, grid: int = 3,
          seed: int = 0, k: int = 5) -> Probe:
    """Probe what the classification of ``image`` rests on: its top classes on edited copies.

    Parameters
    ----------
    target
        The class followed: a class index or label; ``None`` is the original picture's top class,
        kept for every probe. Only classes have a probability, so a unit or direction is refused.
    kinds
        Names from :data:`PROBES` (the original always comes first):

        * ``shuffle``: the picture cut into ``grid x grid`` tiles (``H // grid x W // grid`` pixels;
          leftover rows and columns at the bottom and right stay), permuted by ``seed`` so that no
          tile stays in place when ``grid > 1`` (:func:`shuffle_tiles`). Are the parts enough?
        * ``silhouette``: the object's shape without its texture or colour, black on white. There
          is no saliency in it: the object is every pixel whose RGB distance (0..255 units, rounded)
          from the border colour (the median of the one-pixel frame) is above Otsu's threshold of
          those distances; all of the picture is background when the distance is constant. This
          assumes the border shows background: on a photo the object fills (the default cat), the
          "silhouette" is whatever differs from the fur at the border (eyes, nose, dark stripes).
        * ``grey``: luma only, ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601), rounded half up, in all
          three channels. Does colour matter?
        * ``blur``: a Gaussian blur with sigma ``BLUR_SIGMA * min(H, W)`` (8 px at 224), radius
          ``ceil(3 sigma)``, borders replicated: the shape and colours without fine texture.
        * ``texture``: the central ``H // grid x W // grid`` crop tiled over the picture: texture
          with no object shape (notebook 03 tiled a patch of the cat's forehead fur).
    grid
        Tiles per side for ``shuffle`` and ``texture``: 1 to ``min(H, W)`` of the model input.
    seed
        The shuffle's random permutation (the same seed gives the same picture).
    k
        Top classes kept per picture.

    The pictures are made from what the model sees (its input with ``Normalize`` undone, uint8)
    and go back through the same ``Normalize`` steps (and the luma of a one-channel model), in one
    forward pass, so ``images[kind]`` is exactly what the model was shown (the original row is the
    model input itself, so it agrees with ``net.predict``). The model's flags, weights
    and hooks are as before, also after an error.
    """
    kinds = _check_kinds(kinds)
    k, seed = check_int("k", k), check_int("seed", seed, low=0)
    grid = check_int("grid", grid)
    if isinstance(target, (Unit, Direction)):
        raise OptionError(f"probe follows a class's probability; a {type(target).__name__.lower()} has none: "
                          "pass a class index or label (or None for the top class)")
    resolved = None if target is None else net._resolve_target(target)
    x = net.prepare(image)
    size = min(x.shape[-2:])
    check_int("grid", grid, 1, size)  # tiles of at least one pixel
    pixels, to_input = _pixel_space(net, x)
    images = {"original": pixels}
    for kind in kinds:
        images[kind] = PROBES[kind].make(pixels, grid, seed)
    names = ["original", *kinds]
    # the original is the model input itself (for a PIL image through a usual preprocess, exactly
    # its picture): its probabilities are net.predict's
    batch = torch.cat([x, to_input(np.stack([images[n] for n in kinds]))]) if kinds else x
    with inference_state(net.model), torch.no_grad():
        logits, _ = net._forward(batch)
    if logits is None:
        net.num_classes  # raises the ModelError that says why there are no class scores
    probabilities = logits.detach().float().softmax(dim=-1).cpu()
    if resolved is None:
        index = int(logits[0].argmax())
        resolved = ClassTarget(index, net.label(index))
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    top = {name: [Prediction(net.label(int(i)), float(v), int(i), float(logits[row, int(i)]))
                  for v, i in zip(values[row], indices[row])] for row, name in enumerate(names)}
    return Probe(names, images, top, resolved, {n: float(probabilities[r, resolved.index]) for r, n in enumerate(names)},
                 grid, seed, shuffle_tiles(pixels, grid, seed)[1] if "shuffle" in kinds else None)
