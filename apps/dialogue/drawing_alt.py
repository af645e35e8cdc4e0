"""A second, independently written scene renderer (numpy rasterising, other shape code and shades).

Used only by the shift suite (:mod:`apps.dialogue.shift`), never in training: it checks that the
model reads *shapes and colours*, not the habits of :func:`apps.dialogue.scenes.render`
(Pillow's polygon/ellipse rasteriser, exact palette values, pure white background).

Differences from :func:`scenes.render`, on purpose:

* pixels are covered by an analytic test at 2x2 sub-pixel samples (soft, 5-level edges);
* circles use the radius ``r + 0.5``; squares are ``2r`` wide with corners rounded by 1.5 px;
* triangles are equilateral and centred on their centroid (Pillow's are isosceles, in the bounding
  box of the circle), with the same area as the isosceles one;
* colours are other shades of each palette name (:data:`ALT_SHADES`) and the background is a
  warm off-white; every object gets a 1-px darker rim.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

ALT_SHADES: dict[str, tuple[int, int, int]] = {
    "red": (200, 45, 40), "green": (50, 150, 60), "blue": (45, 80, 200), "orange": (235, 125, 25),
    "gray": (110, 110, 115), "yellow": (240, 220, 40), "purple": (120, 55, 150), "cyan": (30, 175, 185),
}
ALT_BACKGROUND = (246, 243, 235)


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean coverage of sample offsets ``(dx, dy)`` from the object's centre."""
    if shape == "circle":
        return dx * dx + dy * dy <= (r + 0.5) ** 2
    if shape == "square":
        corner = 1.5
        qx, qy = np.abs(dx) - (r - corner), np.abs(dy) - (r - corner)
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
        return outside <= corner
    # equilateral triangle with the area of Pillow's (base 2r, height 2r): side s, s^2 sqrt(3)/4 = 2r^2
    side = math.sqrt(8 * r * r / math.sqrt(3))
    height = side * math.sqrt(3) / 2
    top, bottom = -2 * height / 3, height / 3                     # centroid at the origin, apex up
    ok = (dy >= top) & (dy <= bottom)
    half_width = (dy - top) / height * side / 2
    return ok & (np.abs(dx) <= half_width)


def render_alt(scene: dict, samples: int = 2) -> Image.Image:
    """Draw ``scene`` with this module's own rasteriser (see the module docstring)."""
    h, w = scene["height"], scene["width"]
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = ALT_BACKGROUND
    offsets = (np.arange(samples) + 0.5) / samples
    for o in scene["objects"]:
        x, y, r = o["x"], o["y"], float(o["r"])
        x0, x1 = max(0, int(x - r - 3)), min(w, int(x + r + 4))
        y0, y1 = max(0, int(y - r - 3)), min(h, int(y + r + 4))
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        cover = np.zeros(ys.shape, dtype=np.float32)
        rim = np.zeros(ys.shape, dtype=np.float32)
        for oy in offsets:
            for ox in offsets:
                dx, dy = xs + ox - x, ys + oy - y
                cover += _inside(o["shape"], dx, dy, r)
                rim += _inside(o["shape"], dx, dy, r) & ~_inside(o["shape"], dx, dy, r - 1.0)
        cover /= samples * samples
        rim = np.clip(rim / (samples * samples) / np.maximum(cover, 1e-6), 0, 1)
        fill = np.array(ALT_SHADES[o["colour"]], dtype=np.float32)
        colour = fill[None, None] * (1 - 0.35 * rim[..., None])       # the rim is 35% darker
        patch = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = patch * (1 - cover[..., None]) + colour * cover[..., None]
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))
