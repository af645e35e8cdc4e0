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
