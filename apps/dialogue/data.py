"""Datasets of generated scenes as pre-tokenised tensors (the data pipeline is tensor indexing).

One item is one image with all of its sequences, collated by :class:`mmcore.data.MultimodalCollator`
into a :class:`~mmcore.data.MultimodalBatch`:

==================  =================  ======================================================
key                 shape per item     meaning
==================  =================  ======================================================
``image``           ``[K, 3, P, P]``   modality: region crops (absent -> blind)
``text``            ``[Q, T]``         modality: token ids, padded with ``<pad>``
``geometry``        ``[K, 9]``         field: region geometry
``object_mask``     ``[K]``            field: real regions
``targets``         ``[Q, T]``         field: next-token targets on answer tokens, -100 else
``answer_mask``     ``[Q, T]``         field: positions whose logits predict the answer word
``family``          ``[Q, R]``         field: question family index per round (-1 = none)
``distance``        ``[Q, R]``         field: coreference distance per round
``mention``         ``[Q, R]``         field: slot the round puts in focus (K = none, -100 unknown)
``slot_attributes`` ``[K, 2]``         field: shape and size index of each slot (-100 empty)
``followup``        ``[Q, R]``         field: the round asks about "it" right after an existence /
                                       count question that singled out one object
``raw``             ``[3, H, W]``      field (``with_raw``): uint8 pixels, for the CNN baselines
==================  =================  ======================================================

Modes: ``sort_of_clevr`` (Q = 20 single questions per image, R = 1) and ``dialogue``
(Q = 1 sequence of R rounds per image; ``history=False`` makes it Q = R single questions).

``view`` says how each scene becomes pixels: ``None`` the plain renderer, ``"randomised"`` render
randomisation (:func:`augment.randomised_render`, seeded by the scene's seed, for training), or a
name of :data:`augment.SHIFTS` (the evaluation's shift columns).
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import SHIFTS, randomised_render
from .objects import extract_objects
from .questions import make_dialogue, sort_of_clevr_questions
from .scenes import SHAPES, SIZES, SPLIT_SEEDS, make_scene, make_sort_of_clevr_scene, render
from .tokenizer import ASSISTANT, EOS, IMAGE, PAD, USER, FastEncoder

SOC_FAMILIES = ("nonrel-shape", "nonrel-horizontal", "nonrel-vertical", "rel-closest", "rel-furthest", "rel-count")
DIALOGUE_FAMILIES = ("exist", "count", "seek-colour", "seek-size", "seek-shape", "relate-near", "relate-far",
                     "count-spatial", "coref-seek-colour", "coref-seek-size", "coref-seek-shape", "coref-relate-near",
                     "coref-relate-far", "coref-count-spatial")
SLOTS = 8


@dataclass
class Sample:
    """One generated image with its questions (raw form, before tokenising)."""
    scene: dict
    rounds: list[dict]
    seed: int = 0


def generate_samples(mode: str, split: str, n: int, rounds: int = 10, phrasing: str = "train",
                     followups: float = 0.5) -> list[Sample]:
    base = SPLIT_SEEDS[split]
    out = []
    for i in range(n):
        seed = base + i
        rng = random.Random(seed * 7919 + 1)
        if mode == "sort_of_clevr":
            scene = make_sort_of_clevr_scene(seed)
            out.append(Sample(scene, sort_of_clevr_questions(scene, rng), seed))
        else:
            scene = make_scene(seed, split=split)
            out.append(Sample(scene, make_dialogue(scene, rng, rounds, phrasing, followups), seed))
    return out


def view_image(sample: Sample, view: str | None = None):
    """The pixels of ``sample`` under ``view`` (see the module docstring)."""
    if view is None:
        return render(sample.scene)
    if view == "randomised":
        return randomised_render(sample.scene, random.Random(sample.seed * 104729 + 7))
    if view not in SHIFTS:
        raise ValueError(f"unknown view '{view}' (choose from randomised, {', '.join(SHIFTS)})")
    return SHIFTS[view](sample.scene, sample.seed)


def encode_sequence(rounds: list[dict], encoder: FastEncoder, answers: list[str] | None = None,
                    image: bool = True, layout: str = "per_turn") -> tuple[list[int], list[int], list[int]]:
    """Token ids, next-token targets and answer-logit positions of a dialogue with its answers."""
    ids = [encoder.vocab[IMAGE]] * SLOTS if image and layout == "first" else []
    after = [encoder.vocab[IMAGE]] * SLOTS if image and layout == "per_turn" else []
    targets = [-100] * len(ids)
    answer_pos = []
    for r, item in enumerate(rounds):
        q = [encoder.vocab[USER], *encoder(item["question"]), *after, encoder.vocab[ASSISTANT]]
        ids += q
        targets += [-100] * len(q)
        answer = (answers[r] if answers is not None else item["answer"])
        answer_pos.append(len(ids) - 1)
        targets[-1] = encoder.vocab[item["answer"]]          # logits at ASSISTANT: predict the answer
        ids += [encoder.vocab.get(answer, encoder.unk), encoder.vocab[EOS]]
        targets += [encoder.vocab[EOS], -100]                 # ... and at the answer: predict </s>
    return ids, targets, answer_pos


def match_slots(scene: dict, objs: dict[str, torch.Tensor]) -> tuple[dict[int, int], torch.Tensor]:
    """Scene-graph object id -> region slot (nearest centre), and ``[K, 2]`` (shape, size) per slot."""
    side = max(scene["width"], scene["height"])
    attrs = torch.full((SLOTS, 2), -100, dtype=torch.long)
    slot_of: dict[int, int] = {}
    for k in objs["object_mask"].nonzero().flatten().tolist():
        cx, cy = (objs["object_geometry"][k, :2] * side).tolist()
        o = min(scene["objects"], key=lambda o: (o["x"] - cx) ** 2 + (o["y"] - cy) ** 2)
        slot_of.setdefault(o["id"], k)
        attrs[k, 0], attrs[k, 1] = SHAPES.index(o["shape"]), list(SIZES).index(o["size"])
    return slot_of, attrs


def _objects(sample: Sample, view: str | None = None) -> dict:
    objs = extract_objects(view_image(sample, view), slots=SLOTS)
    objs["slot_of"], objs["slot_attributes"] = match_slots(sample.scene, objs)
    return objs


def _objects_and_raw(sample: Sample, view: str | None = None):
    img = view_image(sample, view)
    objs = extract_objects(img, slots=SLOTS)
    objs["slot_of"], objs["slot_attributes"] = match_slots(sample.scene, objs)
    if img.size != (sample.scene["width"], sample.scene["height"]):
        img = img.resize((sample.scene["width"], sample.scene["height"]))
    return objs, torch.from_numpy(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())


def _by_value(fn, sample):
    """``fn(sample)`` with tensors as numpy arrays: a pool sends tensors through shared memory, one
    file descriptor each, and 10,000 images (40,000 tensors) exceed the open-file limit."""
    out = fn(sample)
    convert = lambda d: {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in d.items()}  # noqa: E731
    return (convert(out[0]), out[1].numpy()) if isinstance(out, tuple) else convert(out)


def _from_arrays(out):
    convert = lambda d: {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in d.items()}  # noqa: E731
    return (convert(out[0]), torch.from_numpy(out[1])) if isinstance(out, tuple) else convert(out)


class SceneQADataset(Dataset):
    """Pre-tokenised, pre-extracted items (see the module table)."""

    def __init__(self, samples: list[Sample], mode: str, history: bool = True, with_raw: bool = False,
                 workers: int = 0, layout: str = "per_turn", view: str | None = None) -> None:
        self.samples, self.mode, self.history, self.with_raw = samples, mode, history, with_raw
        encoder = FastEncoder()
        families = SOC_FAMILIES if mode == "sort_of_clevr" else DIALOGUE_FAMILIES
        fn = functools.partial(_objects_and_raw if with_raw else _objects, view=view)
        if workers > 1 and len(samples) > 200:
            with get_context("fork").Pool(workers) as pool:     # arrays, not tensors: see _by_value
                extracted = [_from_arrays(x) for x in pool.map(functools.partial(_by_value, fn), samples, chunksize=64)]
        else:
            extracted = [fn(s) for s in samples]
        if with_raw:
            objs, raws = zip(*extracted)
            self.raw = torch.stack(raws)
        else:
            objs = extracted
        self.pixels = torch.stack([o["object_pixels"] for o in objs]).to(torch.float16)
        self.geometry = torch.stack([o["object_geometry"] for o in objs])
        self.object_mask = torch.stack([o["object_mask"] for o in objs])
        self.slot_attributes = torch.stack([o["slot_attributes"] for o in objs])

        seqs = []  # per image: list of (rounds) groups, one group per sequence
        for s in samples:
            if mode == "sort_of_clevr" or not history:
                seqs.append([[r] for r in s.rounds])
            else:
                seqs.append([s.rounds])
        q = max(len(g) for g in seqs)
        r = max(len(x) for g in seqs for x in g)
        encoded = [[encode_sequence(x, encoder, layout=layout) for x in g] for g in seqs]
        t = max(len(e[0]) for g in encoded for e in g)
        n = len(samples)
        self.text = torch.full((n, q, t), encoder.vocab[PAD], dtype=torch.long)
        self.targets = torch.full((n, q, t), -100, dtype=torch.long)
        self.answer_mask = torch.zeros((n, q, t), dtype=torch.bool)
        self.family = torch.full((n, q, r), -1, dtype=torch.long)
        self.distance = torch.zeros((n, q, r), dtype=torch.long)
        self.answer = torch.full((n, q, r), -100, dtype=torch.long)
        self.mention = torch.full((n, q, r), -100, dtype=torch.long)
        self.referent = torch.full((n, q, r), -100, dtype=torch.long)
        self.followup = torch.zeros((n, q, r), dtype=torch.bool)
        for i, (g, enc) in enumerate(zip(seqs, encoded)):
            for j, (rounds, (ids, tg, pos)) in enumerate(zip(g, enc)):
                self.text[i, j, :len(ids)] = torch.tensor(ids)
                self.targets[i, j, :len(tg)] = torch.tensor(tg)
                self.answer_mask[i, j, pos] = True
                for k, item in enumerate(rounds):
                    self.family[i, j, k] = families.index(item["family"])
                    self.distance[i, j, k] = item["distance"]
                    self.answer[i, j, k] = encoder.vocab[item["answer"]]
                    self.followup[i, j, k] = bool(item.get("followup", False))
                    # the object the round puts in focus, what "it" means next (Sort-of-CLEVR: the one
                    # named by its colour), else "none" (SLOTS)
                    slot = objs[i]["slot_of"].get(item["mention"], -100) if "mention" in item else SLOTS
                    self.mention[i, j, k] = slot
                    # the object the question names, which a relation is measured from (else "none")
                    self.referent[i, j, k] = (objs[i]["slot_of"].get(item["referent"], -100) if "referent" in item
                                              else SLOTS)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        item = {"image": self.pixels[i].float(), "text": self.text[i], "geometry": self.geometry[i],
                "object_mask": self.object_mask[i], "targets": self.targets[i], "answer_mask": self.answer_mask[i],
                "family": self.family[i], "distance": self.distance[i], "answer": self.answer[i],
                "mention": self.mention[i], "referent": self.referent[i], "slot_attributes": self.slot_attributes[i],
                "followup": self.followup[i]}
        if self.with_raw:
            item["raw"] = self.raw[i]
        return item


def collator():
    from mmcore.data import MultimodalCollator

    return MultimodalCollator(["image", "text"])


TRAIN_PHRASING, TRAIN_FOLLOWUPS = "paraphrase", 0.7


def build(mode: str, split: str, n: int, history: bool = True, with_raw: bool = False, workers: int = 0,
          rounds: int = 10, layout: str = "per_turn", view: str | None = None, phrasing: str | None = None,
          followups: float | None = None) -> SceneQADataset:
    """The dataset of ``n`` images of ``split``. ``phrasing`` / ``followups`` default to the training
    mix for the train split (:data:`TRAIN_PHRASING`: extra paraphrases, fillers and unknown words;
    more follow-ups) and to ``"train"`` / 0.5 elsewhere."""
    if phrasing is None:
        phrasing = TRAIN_PHRASING if split == "train" else "train"
    if followups is None:
        followups = TRAIN_FOLLOWUPS if split == "train" else 0.5
    return SceneQADataset(generate_samples(mode, split, n, rounds, phrasing, followups), mode, history=history,
                          with_raw=with_raw, workers=workers, layout=layout, view=view)
