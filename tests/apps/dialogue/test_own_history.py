"""Regression: the model's own answers written into the history never break the prompt's structure.

A 4,000-step run crashed with "each prompt needs its <image> tokens in groups of 8; got counts
[82, 83, ...]": mixing own answers took the argmax over the whole vocabulary, and a model that
prefers ``<image>`` wrote extra image tokens into the history.
"""
import pytest
import torch
from torch import nn

from apps.dialogue import data as D
from apps.dialogue.evaluate import _vlm_inputs, evaluate
from apps.dialogue.questions import ANSWERS
from apps.dialogue.tokenizer import IMAGE, USER, vocabulary
from apps.dialogue.train import build_model, vlm_step

TINY = {"text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                        "num_key_value_heads": 4}, "vision_hidden": 32}


def _model_preferring(token: str):
    """A model whose first choice for every next token is ``token`` (then lower ids first)."""
    torch.manual_seed(0)
    model = build_model("vlm", TINY)
    lm = model.language_model
    head = nn.Linear(lm.lm_head.in_features, lm.lm_head.out_features, bias=True)
    nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.copy_(-torch.arange(head.out_features, dtype=torch.float) / 100)
        head.bias[vocabulary().index(token)] = 100.0
    lm.lm_head = head
    return model


@pytest.mark.parametrize("token", [IMAGE, USER])
def test_mixed_own_answers_are_answers_not_special_tokens(token):
    model = _model_preferring(token)
    ds = D.build("dialogue", "train", 3)
    batch = D.collator()([ds[i] for i in range(3)])
    seen = {}
    forward = model.forward

    def spy(**kw):
        seen.setdefault("ids", []).append(kw["input_ids"].clone())
        return forward(**kw)

    model.forward = spy
    model.train()
    out = vlm_step(mix_own=1.0)(model, batch)                    # crashed before the fix
    assert torch.isfinite(out.loss)
    original, mixed = seen["ids"][0], seen["ids"][-1]
    image = vocabulary().index(IMAGE)
    assert torch.equal((mixed == image).sum(1), (original == image).sum(1))
    changed = mixed[mixed != original]
    answers = {vocabulary().index(a) for a in ANSWERS}
    assert len(changed) > 0 and set(changed.tolist()) <= answers


def test_own_history_protocol_survives_a_model_that_prefers_image_tokens():
    model = _model_preferring(IMAGE)
    ds = D.build("dialogue", "val", 2)
    report = evaluate(model, ds, protocol="own")
    assert report["n"] == 20 and report["accuracy"] >= 0.0
    inputs = _vlm_inputs(D.collator()([ds[0]]))
    assert int((inputs["input_ids"] == vocabulary().index(IMAGE)).sum()) == 10 * 8


def test_the_shipped_bot_answers_test_dialogues_as_the_evaluator_scores_them(backend):
    """The bot path (pixels in, generated answers, its own answers in the history, no label anywhere)
    against the evaluator's own-answer protocol on the same five test dialogues."""
    from apps.dialogue.evaluate import bot_accuracy

    samples = D.generate_samples("dialogue", "test", 5)
    bot = bot_accuracy(backend, samples)
    scored = evaluate(backend.model, D.SceneQADataset(samples, "dialogue"), protocol="own")
    assert bot["n"] == scored["n"] == 50
    assert bot["accuracy"] >= 0.95 and abs(bot["accuracy"] - scored["accuracy"]) <= 0.02
