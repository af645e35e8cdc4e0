"""Render randomisation for training, and the fixed image shifts of the evaluation suite.

Training (:func:`randomised_render`): every image is drawn with a random mix of

* palette shades jittered by up to +-``shade`` per channel, a tinted light background;
* outline variants (none, a darker rim, a black 1-px outline) and supersampled antialiasing
  (drawn at 2-4x, reduced with LANCZOS / BOX / BICUBIC), or Pillow's hard edges;
* a resize by 0.5-4x with any interpolation, JPEG quality 30-95, Gaussian noise sigma 0-12.

Evaluation (:data:`SHIFTS`): fixed, seeded transforms of the rendered test scenes, each one column
of ``mm dialogue eval``. The second drawing routine (:mod:`apps.dialogue.drawing_alt`) is kept out
of training on purpose.
"""
from __future__ import annotations

import io
import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from .drawing_alt import render_alt
from .scenes import PALETTE, render

RESAMPLE = (Image.NEAREST, Image.BILINEAR, Image.BICUBIC, Image.LANCZOS, Image.BOX, Image.HAMMING)


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def add_noise(img: Image.Image, sigma: float, seed: int) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + np.random.default_rng(seed).normal(0.0, sigma, arr.shape)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def rescale(img: Image.Image, factor: float, resample=Image.BICUBIC) -> Image.Image:
    return img.resize((max(8, round(img.width * factor)), max(8, round(img.height * factor))), resample)


def antialiased(scene: dict, factor: int = 4, resample=Image.LANCZOS) -> Image.Image:
    """The scene drawn at ``factor`` x the size (same shapes, hard edges) and reduced: soft edges."""
    big = {**scene, "width": scene["width"] * factor, "height": scene["height"] * factor,
           "objects": [{**o, "x": o["x"] * factor, "y": o["y"] * factor, "r": o["r"] * factor}
                       for o in scene["objects"]]}
    return render(big).resize((scene["width"], scene["height"]), resample)


def _draw(scene: dict, palette: dict, background: tuple, outline: str, factor: int) -> Image.Image:
    """Pillow drawing with a given palette, background and outline style at ``factor`` x size."""
    f = factor
    img = Image.new("RGB", (scene["width"] * f, scene["height"] * f), background)
    draw = ImageDraw.Draw(img)
    for o in scene["objects"]:
        x, y, r, fill = o["x"] * f, o["y"] * f, o["r"] * f, palette[o["colour"]]
        line = None
        if outline == "rim":
            line = tuple(int(c * 0.65) for c in fill)
        elif outline == "black":
            line = (20, 20, 20)
        width = max(1, f) if line else 0
        box = [x - r, y - r, x + r, y + r]
        if o["shape"] == "circle":
            draw.ellipse(box, fill=fill, outline=line, width=width)
        elif o["shape"] == "square":
            draw.rectangle(box, fill=fill, outline=line, width=width)
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill, outline=line, width=width)
    return img


def randomised_render(scene: dict, rng: random.Random, shade: int = 25) -> Image.Image:
    """One randomised view of ``scene`` (see the module docstring); ``rng`` makes it reproducible."""
    palette = {name: tuple(int(np.clip(c + rng.randint(-shade, shade), 0, 255)) for c in rgb)
               for name, rgb in PALETTE.items()}
    background = tuple(rng.randint(215, 255) for _ in range(3)) if rng.random() < 0.6 else (255, 255, 255)
    outline = rng.choices(("none", "rim", "black"), weights=(0.6, 0.25, 0.15))[0]
    factor = rng.choice((1, 1, 2, 3, 4))
    img = _draw(scene, palette, background, outline, factor)
    if factor > 1:
        img = img.resize((scene["width"], scene["height"]), rng.choice((Image.LANCZOS, Image.BOX, Image.BICUBIC)))
    if rng.random() < 0.6:
        img = rescale(img, rng.choice((rng.uniform(0.5, 1.0), rng.uniform(1.0, 4.0))), rng.choice(RESAMPLE))
    if rng.random() < 0.4:
        img = add_noise(img, rng.uniform(2, 12), rng.randrange(2 ** 31))
    if rng.random() < 0.6:
        img = jpeg(img, rng.randint(30, 95))
    return img


# name -> (scene, seed) -> image; fixed and seeded, one column each of the shift suite
SHIFTS: dict[str, Callable[[dict, int], Image.Image]] = {
    "antialiased": lambda s, seed: antialiased(s, 4, Image.LANCZOS),
    "jpeg75": lambda s, seed: jpeg(render(s), 75),
    "jpeg50": lambda s, seed: jpeg(render(s), 50),
    "up2x_bicubic": lambda s, seed: rescale(render(s), 2.0, Image.BICUBIC),
    "down0.75x": lambda s, seed: rescale(render(s), 0.75, Image.BICUBIC),
    "noise8": lambda s, seed: add_noise(render(s), 8.0, seed),
    "alt_renderer": lambda s, seed: render_alt(s),
}
