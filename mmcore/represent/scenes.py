"""Generated image–caption scenes: one coloured shape per small image, described in words.

Every image is 3 × S × S (default S = 16) with one shape (``SHAPES``) in one colour (``COLOURS``)
in one quadrant (``POSITIONS``), jittered in place, size and shade, on a noisy background.  Its
caption names the colour, the shape and the position in one of several templates, so captions are
compositional: a class (colour, shape) never seen in training is still described by known words.

    ============  ===============  ==========================================
    field         shape / type     meaning
    ============  ===============  ==========================================
    images        [N, 3, S, S]     float in [0, 1]
    captions      list[str]        e.g. "a red circle at the top left"
    colour/shape  [N] long         attribute indices
    position      [N] long         quadrant index
    label         [N] long         colour * len(SHAPES) + shape
    ============  ===============  ==========================================
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

COLOURS = {
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.75, 0.2), "blue": (0.15, 0.25, 0.95),
    "yellow": (0.95, 0.9, 0.1), "purple": (0.6, 0.15, 0.75), "orange": (1.0, 0.55, 0.05),
}
SHAPES = ("circle", "square", "triangle", "cross", "ring")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
TEMPLATES = ("a {c} {s} at the {p}", "there is a {c} {s} at the {p}", "the {p} has a {c} {s}",
             "a picture of a {c} {s} in the {p}")
CLASS_PROMPT = "a {c} {s}"


def class_names() -> list[str]:
    """Natural-language names of all len(COLOURS) × len(SHAPES) classes, in label order."""
    return [CLASS_PROMPT.format(c=c, s=s) for c in COLOURS for s in SHAPES]


def held_out_classes() -> list[int]:
    """A fixed third of the classes whose every colour and shape still appears among the others."""
    n_shapes = len(SHAPES)
    return [ci * n_shapes + si for ci in range(len(COLOURS)) for si in range(n_shapes) if (ci + si) % 3 == 0]


def _shape_mask(shape: str, size: int, cy: float, cx: float, radius: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        return (dy**2 + dx**2 <= radius**2).float()
    if shape == "square":
        return ((dy.abs() <= radius * 0.85) & (dx.abs() <= radius * 0.85)).float()
    if shape == "triangle":
        return ((dy <= radius * 0.8) & (dy >= -radius) & (dx.abs() <= (dy + radius) * 0.6)).float()
    if shape == "cross":
        arm = radius * 0.35
        return (((dy.abs() <= arm) & (dx.abs() <= radius)) | ((dx.abs() <= arm) & (dy.abs() <= radius))).float()
    if shape == "ring":
        r2 = dy**2 + dx**2
        return ((r2 <= radius**2) & (r2 >= (radius * 0.55) ** 2)).float()
    raise ValueError(f"unknown shape {shape!r}")


def render(colour: int, shape: int, position: int, size: int = 16, g: torch.Generator | None = None) -> torch.Tensor:
    """One 3 × size × size image of the given attribute indices, with jitter drawn from ``g``."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand((), generator=g).item()  # noqa: E731
    quarter = size / 4
    cy = (1 if position < 2 else 3) * quarter + u(-1.0, 1.0)
    cx = (1 if position % 2 == 0 else 3) * quarter + u(-1.0, 1.0)
    mask = _shape_mask(SHAPES[shape], size, cy, cx, radius=u(0.75, 0.95) * quarter)
    rgb = torch.tensor(list(COLOURS.values())[colour]) * u(0.8, 1.0)
    background = 0.15 + 0.1 * torch.rand(3, size, size, generator=g)
    image = background * (1 - mask) + rgb[:, None, None] * mask
    return (image + 0.05 * torch.randn(3, size, size, generator=g)).clamp(0, 1)


@dataclass
class SceneSet:
    images: torch.Tensor
    captions: list[str]
    colour: torch.Tensor
    shape: torch.Tensor
    position: torch.Tensor

    @property
    def label(self) -> torch.Tensor:
        return self.colour * len(SHAPES) + self.shape

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, keep: torch.Tensor) -> "SceneSet":
        idx = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
        return SceneSet(self.images[idx], [self.captions[i] for i in idx.tolist()], self.colour[idx], self.shape[idx],
                        self.position[idx])


def generate_scenes(n: int, seed: int = 0, size: int = 16, classes: list[int] | None = None) -> SceneSet:
    """n scenes with classes drawn uniformly from ``classes`` (all by default)."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.tensor(classes if classes is not None else range(len(COLOURS) * len(SHAPES)))
    labels = pool[torch.randint(len(pool), (n,), generator=g)]
    colour, shape = labels // len(SHAPES), labels % len(SHAPES)
    position = torch.randint(len(POSITIONS), (n,), generator=g)
    template = torch.randint(len(TEMPLATES), (n,), generator=g)
    names = list(COLOURS)
    images = torch.stack([render(int(c), int(s), int(p), size, g) for c, s, p in zip(colour, shape, position)])
    captions = [TEMPLATES[int(t)].format(c=names[int(c)], s=SHAPES[int(s)], p=POSITIONS[int(p)])
                for t, c, s, p in zip(template, colour, shape, position)]
    return SceneSet(images, captions, colour, shape, position)
