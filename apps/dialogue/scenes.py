"""Seeded 2-D scenes: objects with shape, colour, size and position, drawn with Pillow.

Two generators share one scene graph (a JSON-able dict):

* :func:`make_scene` - the dialogue scenes: 128x128, 3-8 objects, circles, squares and triangles
  in eight colours and two sizes, never overlapping.
* :func:`make_sort_of_clevr_scene` - Sort-of-CLEVR exactly as Santoro et al. (2017): 75x75, six
  objects, one of each of six colours, squares and circles of half-size 5, centres at least
  10 px apart (their rejection rule).

Scene graph::

    {"width": W, "height": H, "background": [r, g, b], "mode": "scenes" | "sort_of_clevr",
     "objects": [{"id": 0, "shape": "circle", "colour": "red", "size": "large",
                  "x": 40.0, "y": 77.5, "r": 12}, ...]}

``x`` grows to the right, ``y`` grows downwards (image convention); "top" means small ``y``.
Drawing uses no antialiasing, so every object pixel has its palette colour exactly.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "orange": (245, 140, 0),
    "gray": (128, 128, 128), "yellow": (230, 210, 0), "purple": (140, 40, 170), "cyan": (0, 190, 200),
}
SOC_COLOURS = ("red", "green", "blue", "orange", "gray", "yellow")
SHAPES = ("circle", "square", "triangle")
SOC_SHAPES = ("square", "circle")
SIZES = {"small": 7, "large": 12}
BACKGROUND = (255, 255, 255)
# (colour, shape) pairs never drawn in train/val/test scenes; the "heldout" split always has one
HELDOUT_COMBOS = frozenset({("red", "triangle"), ("blue", "circle"), ("yellow", "square"), ("cyan", "triangle")})
SPLIT_SEEDS = {"train": 0, "val": 10_000_000, "test": 20_000_000, "heldout": 30_000_000}


def _place(rng: random.Random, objects: list[dict], r: int, side: int, margin: int) -> tuple[float, float] | None:
    for _ in range(200):
        x = rng.uniform(r + 1, side - r - 2)
        y = rng.uniform(r + 1, side - r - 2)
        if all(math.hypot(x - o["x"], y - o["y"]) > 1.42 * (r + o["r"]) + margin for o in objects):
            return round(x, 1), round(y, 1)
    return None


def make_scene(seed: int, split: str = "train", side: int = 128, n_objects: int | None = None) -> dict:
    """A dialogue scene with 3-8 non-overlapping objects; ``split`` controls the held-out combos."""
    rng = random.Random(seed)
    for _attempt in range(100):
        n = n_objects or rng.randint(3, 8)
        objects: list[dict] = []
        for i in range(n):
            size = rng.choice(list(SIZES))
            r = SIZES[size]
            pos = _place(rng, objects, r, side, margin=4)
            if pos is None:
                break
            if split == "heldout" and i == 0:
                colour, shape = rng.choice(sorted(HELDOUT_COMBOS))
            else:
                while True:
                    colour, shape = rng.choice(list(PALETTE)), rng.choice(SHAPES)
                    if (colour, shape) not in HELDOUT_COMBOS:
                        break
            objects.append({"id": i, "shape": shape, "colour": colour, "size": size, "x": pos[0], "y": pos[1], "r": r})
        if len(objects) == n:
            rng.shuffle(objects)
            for i, o in enumerate(objects):
                o["id"] = i
            return {"width": side, "height": side, "background": list(BACKGROUND), "mode": "scenes", "objects": objects}
    raise RuntimeError(f"could not place objects for seed {seed}")


def make_sort_of_clevr_scene(seed: int) -> dict:
    """Santoro et al.'s Sort-of-CLEVR: 75x75, six colours once each, squares/circles, half-size 5."""
    rng = random.Random(seed)
    side, size = 75, 5
    objects: list[dict] = []
    for i, colour in enumerate(SOC_COLOURS):
        while True:
            x, y = rng.randint(size, side - size), rng.randint(size, side - size)
            if all((x - o["x"]) ** 2 + (y - o["y"]) ** 2 >= (2 * size) ** 2 for o in objects):
                break
        objects.append({"id": i, "shape": rng.choice(SOC_SHAPES), "colour": colour, "size": "small",
                        "x": float(x), "y": float(y), "r": size})
    return {"width": side, "height": side, "background": list(BACKGROUND), "mode": "sort_of_clevr", "objects": objects}


def render(scene: dict) -> Image.Image:
    """Draw a scene graph as an RGB Pillow image (no antialiasing)."""
    img = Image.new("RGB", (scene["width"], scene["height"]), tuple(scene["background"]))
    draw = ImageDraw.Draw(img)
    for o in scene["objects"]:
        x, y, r, fill = o["x"], o["y"], o["r"], PALETTE[o["colour"]]
        if o["shape"] == "circle":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        elif o["shape"] == "square":
            draw.rectangle([x - r, y - r, x + r, y + r], fill=fill)
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    return img


def save_scene(scene: dict, out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``name.png`` and ``name.json`` (the scene graph) atomically into ``out_dir``."""
    import io

    from mmcore.train import atomic_write_bytes, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    render(scene).save(buf, format="PNG")
    atomic_write_bytes(out / f"{name}.png", buf.getvalue())
    atomic_write_text(out / f"{name}.json", json.dumps(scene, indent=1))
    return out / f"{name}.png", out / f"{name}.json"
