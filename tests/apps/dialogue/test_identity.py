"""Object identity features: question-conditioned object tokens, saved and loaded intact."""
import torch

from apps.dialogue import data as D
from apps.dialogue.evaluate import _vlm_inputs
from apps.dialogue.model import SceneVLMForConditionalGeneration
from apps.dialogue.tokenizer import vocabulary
from apps.dialogue.train import build_model

TINY = {"text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                        "num_key_value_heads": 4}, "vision_hidden": 32}


def test_image_tokens_depend_on_the_question_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("vlm", TINY).eval()
    assert model.config.object_identity
    ds = D.build("sort_of_clevr", "train", 2)
    inputs = _vlm_inputs(D.collator()([ds[0], ds[1]]))
    keys = ("input_ids", "object_pixels", "object_geometry", "object_mask", "image_index")
    emb = model.embed(**{k: inputs[k] for k in keys})
    is_image = inputs["input_ids"] == model.config.image_token_id
    first, second = emb[0][is_image[0]], emb[1][is_image[1]]   # same image, different questions
    assert not torch.allclose(first, second)
    model.save_pretrained(tmp_path)
    again = SceneVLMForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits, model(**inputs).logits)


def test_answer_logits_never_see_the_answer_they_predict():
    """Regression: the FiLM question mean once included the round's own (teacher-forced) answer
    word, so a teacher-forced pass scored 100% while generation sat at the answer prior."""
    torch.manual_seed(0)
    ds = D.build("dialogue", "val", 2)
    batch = D.collator()([ds[0], ds[1]])
    for extra in ({"reasoner_layers": 0, "attribute_words": False}, {}):
        model = build_model("vlm", {**TINY, **extra}).eval()
        inputs = _vlm_inputs(batch)
        amask = batch.fields["answer_mask"].flatten(0, 1)
        rows, cols = amask.nonzero(as_tuple=True)
        last = cols == cols.max()                                   # the last round of each dialogue
        changed = inputs["input_ids"].clone()
        yes, no = vocabulary().index("yes"), vocabulary().index("no")
        changed[rows[last], cols[last] + 1] = torch.where(changed[rows[last], cols[last] + 1] == yes, no, yes)
        with torch.no_grad():
            a = model(**inputs).logits[amask]
            b = model(**{**inputs, "input_ids": changed}).logits[amask]
        torch.testing.assert_close(a, b)


def test_mention_memory_counts_rounds_since_each_object_was_in_focus():
    from apps.dialogue.reasoner import recency_from_mentions

    mentions = torch.tensor([[2, -1, 5, 2]])                       # rounds 0..3 of one dialogue
    rounds = torch.arange(5)
    rec = recency_from_mentions(mentions, torch.zeros(5, dtype=torch.long), rounds, slots=8)
    assert rec[0].tolist() == [0] * 8                              # nothing before round 0
    assert rec[3, 2] == 3 and rec[3, 5] == 1 and rec[2, 2] == 2    # "it" = 1 round ago
    assert rec[4, 2] == 1 and rec[4, 5] == 2                       # the latest mention wins


def test_word_match_counts_the_question_words_that_name_each_object():
    from apps.dialogue.reasoner import word_match

    vocab = vocabulary()
    v = len(vocab)
    slot_words = torch.zeros(1, 2, 3, v)
    slot_words[0, 0, 0, vocab.index("red")] = 1.0                  # object 0: red, 0.8 circle, small
    slot_words[0, 0, 1, vocab.index("circle")], slot_words[0, 0, 1, vocab.index("square")] = 0.8, 0.2
    slot_words[0, 0, 2, vocab.index("small")] = 1.0
    slot_words[0, 1, 0, vocab.index("blue")] = 1.0                 # object 1: blue square, large
    slot_words[0, 1, 1, vocab.index("square")] = 1.0
    slot_words[0, 1, 2, vocab.index("large")] = 1.0
    words = ["what", "size", "is", "the", "red", "square", "?", "<pad>"]
    ids = torch.tensor([[vocab.index(w) for w in words]])
    got = word_match(slot_words, ids, ids != vocab.index("<pad>"))
    torch.testing.assert_close(got, torch.tensor([[[1.0, 0.2, 0.0], [0.0, 1.0, 0.0]]]))


def test_relate_reads_offsets_to_the_referent_only_and_ignores_empty_slots():
    from apps.dialogue.reasoner import ObjectReasoner

    torch.manual_seed(0)
    r = ObjectReasoner(16, layers=1, heads=2, relate=True)
    for layer in (r.read_related, r.read_tally, r.read_relcount):    # zero at start: give them something to say
        torch.nn.init.normal_(layer.weight)
    q, h = torch.randn(1, 16), torch.randn(1, 3, 16)
    referent = torch.tensor([[0.0, 1.0, 0.0]])
    xy = torch.rand(1, 3, 2)
    mask = torch.tensor([[True, True, True]])
    a = r._relate(q, h, mask, referent, xy)[0]
    torch.testing.assert_close(a, r._relate(q, h, mask, referent, xy + 0.3)[0])      # the whole scene shifted
    assert not torch.allclose(a, r._relate(q, h, mask, referent, xy * 0.5)[0])        # distances matter
    # an empty slot is the same as no slot (the tally divides by the slot count, so leave it out)
    torch.nn.init.zeros_(r.read_tally.weight)
    pad_h, pad_xy = torch.cat([h, torch.randn(1, 1, 16)], 1), torch.cat([xy, torch.rand(1, 1, 2)], 1)
    padded = r._relate(q, pad_h, torch.tensor([[True, True, True, False]]), torch.tensor([[0.0, 1.0, 0.0, 0.0]]),
                       pad_xy)[0]
    torch.testing.assert_close(padded, r._relate(q, h, mask, referent, xy)[0])


def test_relate_selection_can_pick_the_closest_and_count_objects_left_of_the_referent():
    """With question weights "-|d|" (select) and "-dx" (gate) the read-outs are the closest other
    object and the objects left of the referent: the relation is one linear map away."""
    from apps.dialogue.reasoner import ObjectReasoner, count_bins

    r = ObjectReasoner(8, layers=1, heads=2, relate=True)
    with torch.no_grad():
        for lin in (r.select_geometry, r.gate_geometry):
            lin.weight.zero_()
            lin.bias.zero_()
        r.select_geometry.bias[2] = -5.0                                # score = gain * -5 * |d|
        r.gate_geometry.bias[0] = -5.0                                  # gate = sigmoid(gain * -5 * dx)
    xy = torch.tensor([[[0.5, 0.5], [0.9, 0.5], [0.6, 0.55], [0.1, 0.2], [0.2, 0.9], [0.0, 0.0]]])
    referent = torch.tensor([[1.0, 0, 0, 0, 0, 0]])
    mask = torch.tensor([[True, True, True, True, True, False]])       # the last slot is empty
    delta = xy - xy[:, :1]
    geo = torch.cat([delta, delta.norm(dim=-1, keepdim=True), (delta ** 2).sum(-1, keepdim=True)], -1)
    with torch.no_grad():
        pick, gate = r.relation_weights(torch.zeros(1, 8), geo, referent, mask)
    assert int(pick.argmax()) == 2 and float(pick[0, 2]) > 0.9        # (0.6, 0.55): the closest other object
    assert float(pick[0, 0]) < 1e-6 and float(pick[0, 5]) == 0.0      # never the referent or an empty slot
    left = gate * mask * (1 - referent)
    assert abs(float(left.sum()) - 2.0) < 0.01                        # (0.1, 0.2) and (0.2, 0.9)
    with torch.no_grad():
        r.select_geometry.bias[2] = 5.0                                 # "furthest"
        pick, _ = r.relation_weights(torch.zeros(1, 8), geo, referent, mask)
    assert int(pick.argmax()) == 3
    torch.testing.assert_close(count_bins(torch.tensor([2.0, 2.5])),
                               torch.tensor([[0, 0, 1.0, 0, 0, 0, 0, 0, 0], [0, 0, 0.5, 0.5, 0, 0, 0, 0, 0]]))


def test_handoff_moves_the_focus_to_the_relate_selection_only_when_the_question_is_relational():
    """"what colour is the object closest to the red circle ?" leaves the closest object in focus: the
    focus is the pointer's for plain questions and the relate selection's for relational ones."""
    from apps.dialogue.reasoner import ObjectReasoner

    pointer = torch.tensor([[3.0, 0.0, 0.0, -1e30, 0.0]])            # slots 0..3 (3 empty), then none
    pick = torch.tensor([[0.0, 0.1, 0.9, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    plain = ObjectReasoner._hand_off(pointer, pick, torch.tensor([-30.0]), mask)
    torch.testing.assert_close(plain[:, :3], pointer.log_softmax(-1)[:, :3])
    relational = ObjectReasoner._hand_off(pointer, pick, torch.tensor([30.0]), mask)
    assert int(relational.argmax()) == 2
    torch.testing.assert_close(relational.exp()[:, [0, 1, 2, 4]].sum(), torch.tensor(1.0))
    assert float(relational[0, 3]) < -1e30 and float(plain[0, 3]) < -1e30   # an empty slot is never the focus
    half = ObjectReasoner._hand_off(pointer, pick, torch.tensor([0.0]), mask).exp()
    torch.testing.assert_close(half[0, 2], 0.5 * pointer.softmax(-1)[0, 2] + 0.45)


def test_relation_label_is_focus_other_than_referent():
    """The hand-off gate is trained on "the round's focus is not the object it names"."""
    from types import SimpleNamespace

    from apps.dialogue.train import auxiliary_loss

    mention = torch.tensor([[2, 8, 1]])          # round 0: focus 2; round 1: none; round 2: focus 1
    referent = torch.tensor([[2, 8, 3]])         # round 2 names 3 and asks about 1: relational
    out = SimpleNamespace(logits=torch.zeros(1), pointer_logits=None, anchor_logits=None, attribute_logits=None,
                          counts=None,
                          group_row=torch.tensor([0, 0, 0]), group_round=torch.tensor([0, 1, 2]),
                          relation_logits=torch.tensor([-20.0, -20.0, 20.0]))
    batch = SimpleNamespace(fields={"referent": referent[None]})
    assert float(auxiliary_loss(out, batch, mention)) < 1e-6
    out.relation_logits = torch.tensor([-20.0, -20.0, -20.0])
    assert float(auxiliary_loss(out, batch, mention)) > 5.0


def test_count_loss_supervises_each_counting_round_with_its_numeric_answer():
    """"how many red objects" trains the tally, "how many objects are left of it" the relate gate's
    count; other rounds and counts a model does not have (NaN) are left out."""
    from types import SimpleNamespace

    from apps.dialogue.data import DIALOGUE_FAMILIES
    from apps.dialogue.tokenizer import vocabulary
    from apps.dialogue.train import count_families_for, count_loss

    vocab = vocabulary()
    fams = ["count", "count-spatial", "exist"]
    family = torch.tensor([[[DIALOGUE_FAMILIES.index(f) for f in fams]]])
    answer = torch.tensor([[[vocab.index("3"), vocab.index("1"), vocab.index("yes")]]])
    batch = SimpleNamespace(fields={"family": family, "answer": answer})
    nan = float("nan")
    out = SimpleNamespace(group_row=torch.tensor([0, 0, 0]), group_round=torch.tensor([0, 1, 2]),
                          counts=torch.tensor([[3.0, 9.0], [9.0, 1.0], [9.0, 9.0]]))
    families = count_families_for("dialogue")
    assert float(count_loss(out, batch, families)) == 0.0
    out.counts = torch.tensor([[5.0, 9.0], [9.0, 1.0], [9.0, 9.0]])       # tally off by 2: Huber 1.5, mean 0.75
    assert abs(float(count_loss(out, batch, families)) - 0.75) < 1e-6
    out.counts = torch.tensor([[nan, nan], [nan, 1.0], [9.0, 9.0]])         # no tally: only the gate count
    assert float(count_loss(out, batch, families)) == 0.0
    assert count_families_for("sort_of_clevr") == {}
