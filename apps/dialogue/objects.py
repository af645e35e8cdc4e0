"""Object-centric image tokens: foreground regions against the background, each a crop plus its geometry.

Like bottom-up region features in VQA, the encoder first proposes regions, then a learned CNN reads
each region's crop.  Proposals are *tolerant*, not exact: they must survive antialiasing, JPEG,
rescaling, noise, a tinted background and other drawing code (the shift suite,
:mod:`apps.dialogue.shift`).  So instead of grouping pixels of one exact colour:

1. the image is reduced to at most :data:`MAX_SIDE` pixels with area averaging and, unless it is
   flat-coloured (<= 64 distinct colours), median-filtered (3x3, per channel), which removes sensor
   noise and JPEG ringing but keeps edges;
2. the background colour ``b`` is the per-channel median of the 2-px border;
3. a pixel is foreground when ``|smooth - b|_2 > FOREGROUND_DISTANCE`` (the eight object colours are
   >= 190 from white; blended edge pixels go to whichever side they are closer to);
4. 4-connected foreground components of at least ``min_area`` pixels are regions; a region's colour
   is the median of its *interior* (the mask eroded by up to 2 px), so soft edges and outlines do not
   pull it towards the background.

Each slot carries explicit coordinates, which is what relational questions ("closest to", "left of")
need.  The colour *name* is read from the interior colour by the model (nearest palette shade in
CIELAB, :func:`palette_index`).

======================  ================  ================================================
output                  shape             meaning
======================  ================  ================================================
``object_pixels``       ``[K, 3, P, P]``  region crop (other pixels set to background), 0..1
``object_geometry``     ``[K, G=9]``      cx, cy, w, h (fractions of the side), 10*area,
                                          fill ratio, interior median r, g, b (0..1)
``object_mask``         ``[K]`` bool      True for real regions, False for empty slots
======================  ================  ================================================
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

GEOMETRY_DIM = 9
MAX_SIDE = 256          # larger images are reduced first (area averaging), regions found on the copy
FOREGROUND_DISTANCE = 60.0
_FOUR = ndimage.generate_binary_structure(2, 1)


def _as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
        if max(image.size) > MAX_SIDE:
            scale = MAX_SIDE / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BOX)
        return np.asarray(image, dtype=np.uint8)
    return np.asarray(image, dtype=np.uint8)


def segment(arr: np.ndarray) -> dict:
    """Background colour, smoothed image, foreground labels and region table of an ``[H, W, 3]`` uint8 image."""
    h, w, _ = arr.shape
    # a flat-coloured render (a few dozen distinct colours) is read as is: the median filter would
    # round the corners of 5-px Sort-of-CLEVR shapes; anything else (antialiased, JPEG, noise) is filtered
    packed = arr.reshape(-1, 3).astype(np.int64) @ np.array([65536, 256, 1])
    flat = len(np.unique(packed)) <= 64
    smooth = (arr if flat else ndimage.median_filter(arr, size=(3, 3, 1))).astype(np.float32)
    edge = min(2, max(1, min(h, w) // 8))
    border = np.concatenate([smooth[:edge].reshape(-1, 3), smooth[-edge:].reshape(-1, 3),
                             smooth[:, :edge].reshape(-1, 3), smooth[:, -edge:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    distance = np.linalg.norm(smooth - background, axis=-1)
    labels, n = ndimage.label(distance > FOREGROUND_DISTANCE, structure=_FOUR)
    min_area = max(6, int(0.0004 * h * w))
    labels, n = split_touching(labels, n, smooth, min_area)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    regions = [(int(areas[lab]), lab, box) for lab, box in enumerate(ndimage.find_objects(labels), start=1)
               if box is not None and areas[lab] >= min_area]
    border_distance = np.linalg.norm(border - background, axis=-1)
    return {"smooth": smooth, "background": background, "labels": labels, "regions": regions,
            "border_uniform": float((border_distance < FOREGROUND_DISTANCE / 2).mean())}


def split_touching(labels: np.ndarray, n: int, smooth: np.ndarray, min_area: int) -> tuple[np.ndarray, int]:
    """Split foreground components that hold touching objects of different colours (Sort-of-CLEVR
    places objects edge to edge).

    Inside each component, the pixels one erosion in from its edge (blended edge pixels excluded) are
    named by their nearest palette colour (CIELAB); each colour's 4-connected cores of at least
    ``max(min_area, 15% of the core)`` pixels are seeds (smaller ones are JPEG colour fringes), except a core whose bounding box holds another core's centre
    (an outline ring around a fill); with two or more seeds every pixel of the component goes to the
    nearest seed. ``labels [H, W]`` (0 = background) -> relabelled copy and the new count.
    """
    from .scenes import PALETTE

    palette = srgb_to_lab(torch.tensor(list(PALETTE.values()), dtype=torch.float32) / 255.0)
    out, count = labels.copy(), n
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        comp = labels[box] == lab
        core = ndimage.binary_erosion(comp, structure=_FOUR)
        if core.sum() < min_area:
            continue
        lab_px = srgb_to_lab(torch.from_numpy(smooth[box][core] / 255.0))
        names = np.full(comp.shape, -1)
        names[core] = torch.cdist(lab_px, palette).argmin(-1).numpy()
        seeds = []
        for name in np.unique(names[core]):
            parts, m = ndimage.label(names == name, structure=_FOUR)
            for part, pbox in enumerate(ndimage.find_objects(parts), start=1):
                if pbox is not None and (parts[pbox] == part).sum() >= max(min_area, 0.15 * core.sum()):
                    seeds.append((parts == part, pbox))
        centres = [((b[0].start + b[0].stop) / 2, (b[1].start + b[1].stop) / 2) for _, b in seeds]
        seeds = [(m, b) for i, (m, b) in enumerate(seeds)
                 if not any(j != i and b[0].start <= cy < b[0].stop and b[1].start <= cx < b[1].stop
                            for j, (cy, cx) in enumerate(centres))]
        if len(seeds) < 2:
            continue
        seed_map = np.zeros(comp.shape, dtype=np.int32)
        for i, (m, _) in enumerate(seeds, start=1):
            seed_map[m] = i
        _, (iy, ix) = ndimage.distance_transform_edt(seed_map == 0, return_indices=True)
        nearest = seed_map[iy, ix]
        region = out[box]
        for i in range(2, len(seeds) + 1):
            count += 1
            region[comp & (nearest == i)] = count
    return out, count


def interior_colour(smooth: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Median colour of the region eroded by up to 2 px (the whole region when that leaves < 4 pixels)."""
    core = region
    for _ in range(2):
        eroded = ndimage.binary_erosion(core, structure=_FOUR)
        if eroded.sum() < 4:
            break
        core = eroded
    return np.median(smooth[core], axis=0)


def extract_objects(image: Image.Image | np.ndarray, slots: int = 8, patch: int = 12) -> dict[str, torch.Tensor]:
    """Find up to ``slots`` regions (largest first) in an RGB image; see the module table."""
    arr = _as_array(image)
    h, w, _ = arr.shape
    side = float(max(h, w))
    seg = segment(arr)
    regions = sorted(seg["regions"], key=lambda r: -r[0])[:slots]
    regions.sort(key=lambda r: ((r[2][1].start + r[2][1].stop), (r[2][0].start + r[2][0].stop)))
    smooth, labels = seg["smooth"], seg["labels"]
    bg_colour = seg["background"] / 255.0

    pixels = np.ones((slots, 3, patch, patch), dtype=np.float32)
    geometry = np.zeros((slots, GEOMETRY_DIM), dtype=np.float32)
    mask = np.zeros(slots, dtype=bool)
    for k, (area, lab, (ys, xs)) in enumerate(regions):
        region = labels[ys, xs] == lab
        bh, bw = ys.stop - ys.start, xs.stop - xs.start
        cy, cx = (ys.start + ys.stop) / 2, (xs.start + xs.stop) / 2
        span = max(bh, bw) + 2
        grid = (np.arange(patch) + 0.5) * span / patch - span / 2
        yy = np.clip(np.floor(cy + grid).astype(int), 0, h - 1)
        xx = np.clip(np.floor(cx + grid).astype(int), 0, w - 1)
        crop = arr[yy][:, xx].astype(np.float32) / 255.0
        inside = labels[yy][:, xx] == lab
        crop[~inside] = bg_colour
        pixels[k] = crop.transpose(2, 0, 1)
        colour = interior_colour(smooth[ys, xs], region) / 255.0
        geometry[k] = [cx / side, cy / side, bw / side, bh / side, 10 * area / (h * w), area / (bh * bw), *colour]
        mask[k] = True
    return {"object_pixels": torch.from_numpy(pixels), "object_geometry": torch.from_numpy(geometry),
            "object_mask": torch.from_numpy(mask)}


# ----------------------------------------------------------------------------- colour names
def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` sRGB in 0..1 -> CIELAB (D65): L in 0..100, a/b roughly -128..127."""
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0) + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]],
                     dtype=rgb.dtype, device=rgb.device)
    xyz = lin @ m.T / torch.tensor([0.9505, 1.0, 1.089], dtype=rgb.dtype, device=rgb.device)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-9) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def palette_index(rgb: torch.Tensor, palette_rgb: torch.Tensor) -> torch.Tensor:
    """``[..., 3] -> [...]``: index of the nearest palette colour in CIELAB (perceptual distance).

    Shades of one name (a JPEG-shifted red, a darker red from another renderer) stay nearer to their
    own name than to a neighbour (orange/yellow, blue/purple) in Lab than in RGB."""
    lab = srgb_to_lab(rgb.float())
    ref = srgb_to_lab(palette_rgb.float())
    return torch.cdist(lab.reshape(-1, 3), ref).argmin(-1).view(rgb.shape[:-1])


def scene_statistics(image: Image.Image | np.ndarray) -> dict:
    """What :mod:`apps.dialogue.abstain` reads to tell a scene of flat shapes from anything else:
    ``border_uniform`` (share of the border at the background colour), ``regions`` (number of
    candidate regions), ``foreground`` (share of the image covered by regions) and
    ``flatness`` (the largest per-region interior colour spread, 0..255)."""
    arr = _as_array(image)
    seg = segment(arr)
    smooth, labels = seg["smooth"], seg["labels"]
    spreads = []
    for _area, lab, (ys, xs) in sorted(seg["regions"], key=lambda r: -r[0])[:12]:
        region = labels[ys, xs] == lab
        core = ndimage.binary_erosion(region, structure=_FOUR, iterations=2)
        if core.sum() >= 4:
            spreads.append(float(np.median(np.abs(smooth[ys, xs][core] - np.median(smooth[ys, xs][core], 0)).max(-1))))
    covered = sum(a for a, _, _ in seg["regions"]) / float(arr.shape[0] * arr.shape[1])
    return {"border_uniform": seg["border_uniform"], "regions": len(seg["regions"]), "foreground": covered,
            "flatness": max(spreads) if spreads else 0.0}
