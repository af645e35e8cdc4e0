"""Object identity features: question-conditioned object tokens, saved and loaded intact."""
import torch

from apps.dialogue import data as D
from apps.dialogue.evaluate import _vlm_inputs
from apps.dialogue.model import SceneVLMForConditionalGeneration
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
