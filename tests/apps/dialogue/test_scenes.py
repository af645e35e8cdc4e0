"""Scenes, questions and object tokens against independent recomputation."""
import json
import math
import random

import numpy as np
import pytest

from apps.dialogue.objects import extract_objects
from apps.dialogue.questions import ANSWERS, make_dialogue, sort_of_clevr_questions
from apps.dialogue.scenes import (
    HELDOUT_COMBOS,
    PALETTE,
    SOC_COLOURS,
    make_scene,
    make_sort_of_clevr_scene,
    render,
    save_scene,
)
from apps.dialogue.tokenizer import FastEncoder, build_prompt, make_tokenizer, words


def test_scene_is_seeded_and_round_trips_as_json(tmp_path):
    a, b = make_scene(5), make_scene(5)
    assert a == b and make_scene(6) != a
    png, js = save_scene(a, tmp_path, "s")
    assert json.loads(js.read_text()) == a
    assert 3 <= len(a["objects"]) <= 8


def test_sort_of_clevr_matches_santoro_spec():
    for seed in range(30):
        s = make_sort_of_clevr_scene(seed)
        assert (s["width"], s["height"]) == (75, 75)
        assert sorted(o["colour"] for o in s["objects"]) == sorted(SOC_COLOURS)
        assert {o["shape"] for o in s["objects"]} <= {"square", "circle"}
        for i, o in enumerate(s["objects"]):
            for p in s["objects"][i + 1:]:
                assert math.hypot(o["x"] - p["x"], o["y"] - p["y"]) >= 10


def test_sort_of_clevr_answers_match_a_numpy_reference():
    for seed in range(40):
        s = make_sort_of_clevr_scene(seed)
        objs = {o["colour"]: o for o in s["objects"]}
        xy = np.array([[o["x"], o["y"]] for o in s["objects"]])
        for q in sort_of_clevr_questions(s, random.Random(seed)):
            colour = next(c for c in SOC_COLOURS if f" {c} " in q["question"])
            o = objs[colour]
            d = np.hypot(*(xy - [o["x"], o["y"]]).T)
            d[s["objects"].index(o)] = np.nan
            if q["family"] == "rel-closest":
                assert q["answer"] == s["objects"][int(np.nanargmin(d))]["shape"]
            elif q["family"] == "rel-furthest":
                assert q["answer"] == s["objects"][int(np.nanargmax(d))]["shape"]
            elif q["family"] == "rel-count":
                assert int(q["answer"]) == sum(p["shape"] == o["shape"] for p in s["objects"]) - 1
            elif q["family"] == "nonrel-horizontal":
                assert q["answer"] == ("yes" if o["x"] < 37.5 else "no")
            elif q["family"] == "nonrel-vertical":
                assert q["answer"] == ("yes" if o["y"] < 37.5 else "no")
            else:
                assert q["answer"] == o["shape"]


def test_objects_are_recovered_with_their_positions_and_colours():
    for seed in range(25):
        scene = make_scene(seed) if seed % 2 else make_sort_of_clevr_scene(seed)
        out = extract_objects(render(scene))
        n = len(scene["objects"])
        assert int(out["object_mask"].sum()) == n
        geo = out["object_geometry"][:n].numpy()
        side = scene["width"]
        for o in scene["objects"]:
            k = np.argmin(np.hypot(geo[:, 0] * side - o["x"], geo[:, 1] * side - o["y"]))
            assert abs(geo[k, 0] * side - o["x"]) <= 1.5 and abs(geo[k, 1] * side - o["y"]) <= 1.5
            assert np.allclose(geo[k, 6:9] * 255, PALETTE[o["colour"]], atol=1)


def test_dialogues_label_coreference_and_balance_existence():
    yes = no = 0
    for seed in range(300):
        scene = make_scene(seed)
        by_id = {o["id"]: o for o in scene["objects"]}
        rounds = make_dialogue(scene, random.Random(seed))
        assert len(rounds) == 10
        for r in rounds:
            assert r["answer"] in ANSWERS
            if r["family"] == "exist":
                yes += r["answer"] == "yes"
                no += r["answer"] == "no"
            if "it" in words(r["question"]):
                assert r["distance"] == 1
            if "earlier" in r["question"]:
                tokens = words(r["question"])
                shape = tokens[tokens.index("earlier") + 1]
                assert by_id[r["referent"]]["shape"] == shape and r["distance"] >= 1
            if r["family"] == "coref-seek-colour":
                assert r["answer"] == by_id[r["referent"]]["colour"]
    assert 0.4 < yes / (yes + no) < 0.6


def test_heldout_split_alone_has_unseen_attribute_combinations():
    seen = {(o["colour"], o["shape"]) for s in range(300) for o in make_scene(s, "train")["objects"]}
    assert not seen & HELDOUT_COMBOS
    assert all({(o["colour"], o["shape"]) for o in make_scene(s, "heldout")["objects"]} & HELDOUT_COMBOS
               for s in range(50))


@pytest.mark.parametrize("layout", ["per_turn", "first"])
def test_chat_template_renders_the_training_prompt(layout):
    tok = make_tokenizer(layout)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what colour is it ?"}]},
                {"role": "assistant", "content": "red"}, {"role": "user", "content": "is there a red circle ?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = build_prompt([("what colour is it ?", "red")], "is there a red circle ?", layout=layout)
    assert text == expected
    assert tok(text).input_ids == FastEncoder()(text)
