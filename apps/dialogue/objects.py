"""Object-centric image tokens: connected regions of one colour, each a crop plus its geometry.

Like bottom-up region features in VQA, the encoder first proposes regions (here exactly, since
the scenes are flat-coloured: pixels are quantised to 3 bits per channel, the background is the
commonest border colour, and each colour's 8-connected components are regions), then a learned
CNN reads each region's crop.  Each slot carries explicit coordinates, which is what relational
questions ("closest to", "left of") need.

======================  ================  ================================================
output                  shape             meaning
======================  ================  ================================================
``object_pixels``       ``[K, 3, P, P]``  region crop (other pixels set to background), 0..1
``object_geometry``     ``[K, G=9]``      cx, cy, w, h (fractions of the side), 10*area,
                                          fill ratio, mean r, g, b
``object_mask``         ``[K]`` bool      True for real regions, False for empty slots
======================  ================  ================================================
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

GEOMETRY_DIM = 9
MAX_SIDE = 256          # larger images are shrunk first (regions are found on the small copy)
_EIGHT = np.ones((3, 3), dtype=bool)


def extract_objects(image: Image.Image | np.ndarray, slots: int = 8, patch: int = 12,
                    max_colours: int = 24) -> dict[str, torch.Tensor]:
    """Find up to ``slots`` regions (largest first) in an RGB image; see the module table."""
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
        if max(image.size) > MAX_SIDE:
            scale = MAX_SIDE / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.NEAREST)
        arr = np.asarray(image, dtype=np.uint8)
    else:
        arr = np.asarray(image, dtype=np.uint8)
    h, w, _ = arr.shape
    side = float(max(h, w))
    codes = (arr[..., 0] // 32).astype(np.int32) * 64 + (arr[..., 1] // 32) * 8 + (arr[..., 2] // 32)
    border = np.concatenate([codes[0], codes[-1], codes[:, 0], codes[:, -1]])
    background = np.bincount(border).argmax()
    values, counts = np.unique(codes, return_counts=True)
    order = np.argsort(-counts)
    min_area = max(6, int(0.0004 * h * w))
    regions = []
    for code in values[order][:max_colours + 1]:
        if code == background:
            continue
        labels, n = ndimage.label(codes == code, structure=_EIGHT)
        if n == 0:
            continue
        areas = np.bincount(labels.ravel())
        for lab, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None and areas[lab] >= min_area:
                regions.append((int(areas[lab]), lab, box, labels))
    regions.sort(key=lambda r: -r[0])
    regions = regions[:slots]
    regions.sort(key=lambda r: ((r[2][1].start + r[2][1].stop), (r[2][0].start + r[2][0].stop)))

    pixels = np.ones((slots, 3, patch, patch), dtype=np.float32)
    geometry = np.zeros((slots, GEOMETRY_DIM), dtype=np.float32)
    mask = np.zeros(slots, dtype=bool)
    bg_colour = np.median(arr.reshape(-1, 3)[codes.ravel() == background], axis=0) / 255.0
    for k, (area, lab, (ys, xs), labels) in enumerate(regions):
        region = labels == lab
        bh, bw = ys.stop - ys.start, xs.stop - xs.start
        cy, cx = (ys.start + ys.stop) / 2, (xs.start + xs.stop) / 2
        span = max(bh, bw) + 2
        grid = (np.arange(patch) + 0.5) * span / patch - span / 2
        yy = np.clip(np.floor(cy + grid).astype(int), 0, h - 1)
        xx = np.clip(np.floor(cx + grid).astype(int), 0, w - 1)
        crop = arr[yy][:, xx].astype(np.float32) / 255.0
        inside = region[yy][:, xx]
        crop[~inside] = bg_colour
        pixels[k] = crop.transpose(2, 0, 1)
        mean = arr[region].mean(axis=0) / 255.0
        geometry[k] = [cx / side, cy / side, bw / side, bh / side, 10 * area / (h * w), area / (bh * bw), *mean]
        mask[k] = True
    return {"object_pixels": torch.from_numpy(pixels), "object_geometry": torch.from_numpy(geometry),
            "object_mask": torch.from_numpy(mask)}
