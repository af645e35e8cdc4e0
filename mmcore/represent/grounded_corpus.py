"""A generated world for grounded word embeddings: objects with looks, scenes with topics, captions.

Eighteen object nouns each have a look — one of the colours and one of three shapes from
:mod:`.scenes` — and belong to one of six scene topics, assigned so that topic and look are
independent (topic = (colour + 2·shape) mod 6).  Captions describe a scene: two objects of the
same topic and a topic word, and sometimes a colour adjective, e.g.

    "the cherry lies beside the lime in the kitchen"   "a red cherry near the stove"

so co-occurrence statistics carry topics (and a little colour) but almost nothing about shape.
Each object's visual feature is [hue histogram, silhouette radial profile] computed from a
rendered, jittered view — the "image" of the thing the word names.

Ground-truth visual similarity of two objects = [same colour] + [same shape] ∈ {0, 1, 2}.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .scenes import COLOURS, _shape_mask

OBJECT_SHAPES = ("circle", "square", "triangle")
NOUNS = (
    "cherry", "brick", "pennant", "lime", "tile", "leaf", "marble", "box", "sail", "lemon", "cheese",
    "wedge", "plum", "card", "cone", "orange", "crate", "slice",
)
TOPICS = {
    "kitchen": ("stove", "sink", "counter"), "garden": ("hedge", "path", "shed"), "office": ("desk", "lamp", "shelf"),
    "beach": ("sand", "wave", "towel"), "school": ("board", "bench", "hall"), "market": ("stall", "cart", "crowd"),
}
PATTERNS = ("the {a} lies beside the {b} in the {t}", "a {a} and a {b} near the {c}", "we saw a {a} by the {c}",
            "in the {t} a {b} sits next to a {a}", "the {c} had a {a} and a {b}")


@dataclass
class GroundedWorld:
    nouns: list[str]
    colour: torch.Tensor      # [18] colour index per noun
    shape: torch.Tensor       # [18] index into OBJECT_SHAPES
    topic: torch.Tensor       # [18] topic index

    @classmethod
    def default(cls) -> "GroundedWorld":
        colour = torch.arange(18) // 3
        shape = torch.arange(18) % 3
        return cls(list(NOUNS), colour, shape, (colour + 2 * shape) % len(TOPICS))

    def visual_similarity(self) -> torch.Tensor:
        """[18, 18] ground truth: same colour + same shape."""
        return ((self.colour[:, None] == self.colour[None]).float() + (self.shape[:, None] == self.shape[None]).float())

    def captions(self, n: int, adjective_rate: float = 0.3, seed: int = 0) -> list[str]:
        g = torch.Generator().manual_seed(seed)
        topics = list(TOPICS)
        colours = list(COLOURS)
        by_topic = {t: (self.topic == t).nonzero().flatten().tolist() for t in range(len(topics))}
        out = []
        for _ in range(n):
            t = int(torch.randint(len(topics), (), generator=g))
            members = by_topic[t]
            a, b = (members[int(i)] for i in torch.randperm(len(members), generator=g)[:2])
            words = []
            for obj in (a, b):
                word = self.nouns[obj]
                if torch.rand((), generator=g).item() < adjective_rate:
                    word = f"{colours[int(self.colour[obj])]} {word}"
                words.append(word)
            context = TOPICS[topics[t]][int(torch.randint(3, (), generator=g))]
            pattern = PATTERNS[int(torch.randint(len(PATTERNS), (), generator=g))]
            out.append(pattern.format(a=words[0], b=words[1], t=topics[t], c=context))
        return out

    def visual_features(self, views: int = 1, seed: int = 0) -> torch.Tensor:
        """[18, 12 + 16] features averaged over ``views`` rendered, jittered looks of each object.

        Two unit-norm blocks computed from the rendered view: a soft 12-bin hue histogram of the
        object's colour, and the silhouette's radial profile (farthest foreground pixel from the
        centroid in 16 angular sectors, divided by its mean: flat for a circle, 4 peaks for a square).
        """
        g = torch.Generator().manual_seed(seed)
        rgb = torch.tensor(list(COLOURS.values()))
        feats = []
        for c, s in zip(self.colour.tolist(), self.shape.tolist()):
            acc = torch.zeros(12 + 16)
            for _ in range(views):
                jitter = torch.rand(3, generator=g) - 0.5
                mask = _shape_mask(OBJECT_SHAPES[s], 24, 12 + jitter[0].item(), 12 + jitter[1].item(), 8 + jitter[2].item())
                colour = (rgb[c] * (0.9 + 0.1 * torch.rand((), generator=g)) + 0.03 * torch.randn(3, generator=g)).clamp(0, 1)
                acc += torch.cat([F.normalize(_hue_histogram(colour), dim=0), F.normalize(_radial_profile(mask), dim=0)])
            feats.append(acc / views)
        return torch.stack(feats)


def _hue_histogram(rgb: torch.Tensor, bins: int = 12) -> torch.Tensor:
    hue = colorsys.rgb_to_hsv(*rgb.tolist())[0] * bins
    centres = torch.arange(bins, dtype=torch.float32)
    dist = torch.minimum((centres - hue).abs(), bins - (centres - hue).abs())   # circular distance in bins
    return torch.exp(-0.5 * dist**2)


def _radial_profile(mask: torch.Tensor, sectors: int = 16) -> torch.Tensor:
    yy, xx = mask.nonzero(as_tuple=True)
    dy, dx = yy.float() - yy.float().mean(), xx.float() - xx.float().mean()
    sector = ((torch.atan2(dy, dx) + math.pi) / (2 * math.pi) * sectors).long().clamp(max=sectors - 1)
    radius = torch.zeros(sectors).scatter_reduce(0, sector, (dy**2 + dx**2).sqrt(), reduce="amax")
    return radius / radius.mean() - 1
