"""Issue 15: perception that survives other pixels, phrasings never trained on, follow-ups, abstaining."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from apps.dialogue import abstain as A
from apps.dialogue import data as D
from apps.dialogue.augment import SHIFTS, randomised_render
from apps.dialogue.objects import extract_objects, palette_index
from apps.dialogue.questions import TEMPLATES, make_dialogue, template_words
from apps.dialogue.scenes import PALETTE, make_scene
from apps.dialogue.tokenizer import FastEncoder, make_tokenizer, vocabulary

PALETTE_RGB = torch.tensor(list(PALETTE.values()), dtype=torch.float32) / 255.0


@pytest.mark.parametrize("view", [*SHIFTS, "randomised"])
def test_regions_and_colour_names_survive_every_shift(view):
    """Old proposals (3-bit colour quantisation) split antialiased / JPEG objects into many regions
    and merged noise into none; each view must give one region per object with its colour name."""
    names = list(PALETTE)
    for i, sample in enumerate(D.generate_samples("dialogue", "test", 8)):
        objs = extract_objects(D.view_image(sample, view))
        assert int(objs["object_mask"].sum()) == len(sample.scene["objects"]), (view, i)
        slot_of, _ = D.match_slots(sample.scene, objs)
        assert len(slot_of) == len(sample.scene["objects"])
        colours = palette_index(objs["object_geometry"][:, 6:9], PALETTE_RGB)
        for o in sample.scene["objects"]:
            assert names[int(colours[slot_of[o["id"]]])] == o["colour"], (view, i, o)


def test_randomised_render_is_seeded_and_varies():
    scene = make_scene(3)
    a, b = randomised_render(scene, random.Random(1)), randomised_render(scene, random.Random(1))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    sizes = {randomised_render(scene, random.Random(s)).size for s in range(30)}
    assert len(sizes) > 3                                     # rescaled 0.5-4x


def test_heldout_phrasings_never_appear_in_training_dialogues():
    heldout = {t.split("{")[0] for fam in TEMPLATES.values() for t in fam["heldout"]}
    train_starts = {t.split("{")[0] for fam in TEMPLATES.values() for t in fam["train"]}
    seen = set()
    for seed in range(150):
        for r in make_dialogue(make_scene(seed), random.Random(seed)):
            seen.add(r["question"].lower().rstrip(" ?"))
    heldout_only = {h for h in heldout if h not in train_starts and h.strip()}
    assert heldout_only
    assert not any(q.startswith(h.strip()) for q in seen for h in heldout_only if len(h.strip()) > 12)
    vocab = set(vocabulary())
    assert set(template_words()) <= vocab


def test_typed_questions_tokenise_as_the_hf_tokenizer_does():
    tok, enc = make_tokenizer(), FastEncoder()
    for q in ("What color is it?", "Count the red objects", "is there a red circle", "How many circles are there?"):
        assert tok(q).input_ids == enc(q), q
        assert tok.unk_token_id not in enc(q)


def test_followups_after_existence_and_count_put_the_single_match_in_focus():
    n_follow = 0
    for seed in range(100):
        scene = make_scene(seed)
        rounds = make_dialogue(scene, random.Random(seed), followups=1.0)
        for prev, r in zip(rounds, rounds[1:]):
            if prev["family"] in ("exist", "count") and "mention" in prev:
                match = [o for o in scene["objects"] if o["id"] == prev["mention"]]
                assert len(match) == 1 and prev["matches"] == 1
                assert r["followup"] and r["referent"] == prev["mention"] and r["distance"] == 1
                n_follow += 1
    assert n_follow > 50
    answers = {r["answer"] for s in range(300) for r in make_dialogue(make_scene(s), random.Random(s))
               if r["family"] == "count"}
    assert {str(i) for i in range(9)} <= answers              # every count value 0..8 occurs


OBJECTS = [{"colour": "red", "shape": "circle", "size": "large"}, {"colour": "blue", "shape": "circle", "size": "small"},
           {"colour": "green", "shape": "square", "size": "small"}]


@pytest.mark.parametrize("history,question,expected", [
    ([], "what colour is the square ?", None),
    ([], "What color is the circle?", "which one? there are 2 circles"),
    ([], "what size is the red triangle ?", "there is no red triangle"),
    ([("is there a red triangle ?", "no")], "what size is it ?", "there is no red triangle"),
    ([("is there a red circle ?", "yes")], "what size is it ?", None),
    ([("how many circles are there ?", "2")], "what size is it ?", "which one? there are 2 circles"),
    ([], "is there a yellow square ?", None),                   # "no" is an answer
    ([], "how many objects are there in total ?", None),
    ([], "what is the weather like ?", A.OOV_ANSWER),
])
def test_refusal_cases(history, question, expected):
    assert A.refusal(question, history, OBJECTS, scene_like=True) == expected


def test_not_a_scene_and_answer_types():
    assert A.refusal("what colour is the square ?", [], OBJECTS, scene_like=False) == A.NOT_A_SCENE
    assert not A.answer_has_type("large", "colour") and A.answer_has_type("red", "colour")
    assert A.answer_has_type("0", "number") and not A.answer_has_type("yes", "number")


def test_scene_check_accepts_shifted_scenes_and_refuses_photos_and_blanks():
    class Vision(torch.nn.Module):          # perception without a trained model: shape/size logits are zero
        def forward(self, pixels, geometry):
            return torch.zeros(*pixels.shape[:2], 5)

    model = torch.nn.Module()
    model.vision_tower, model.attribute_head = Vision(), torch.nn.Identity()
    for i in range(6):
        scene = make_scene(20_000_000 + i, "test")
        for view in ("alt_renderer", "jpeg50", "noise8", "up2x_bicubic"):
            img = SHIFTS[view](scene, i)
            assert A.looks_like_scene(img, A.perceive(model, img)), (i, view)
    blank = Image.new("RGB", (128, 128), "white")
    assert not A.looks_like_scene(blank, A.perceive(model, blank))
    photos = A.natural_photos()
    if not photos:
        pytest.skip("scikit-image (its photos) is not installed")
    refused = [name for name, img in photos if not A.looks_like_scene(img, A.perceive(model, img))]
    assert len(refused) == len(photos), set(n for n, _ in photos) - set(refused)
