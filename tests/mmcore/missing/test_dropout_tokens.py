"""Modality dropout: per-modality rates, never everything, identity in eval, curriculum; tokens."""
import pytest
import torch

from mmcore.data import collate_multimodal
from mmcore.encoders.mlp import MLPEncoder
from mmcore.fusion import EarlyFusion
from mmcore.missing import DropoutCurriculum, MissingTokenModel, MissingTokens, ModalityDropout
from mmcore.models.multimodal import MultimodalModel, build_head


def make_batch(n=4000, missing_text_every=0):
    samples = [{"image": torch.randn(4), "text": None if missing_text_every and i % missing_text_every == 0 else torch.randn(3),
                "label": i % 2} for i in range(n)]
    return collate_multimodal(samples, ["image", "text"], shapes={"image": (4,), "text": (3,)})


def test_rates_are_per_modality_and_never_drop_everything():
    batch = make_batch()
    drop = ModalityDropout({"image": 0.3, "text": 0.6}).train()
    out = drop(batch, generator=torch.Generator().manual_seed(0))
    kept_image, kept_text = out.mask("image").float().mean().item(), out.mask("text").float().mean().item()
    both = (~out.mask("image") & ~out.mask("text")).sum().item()
    assert both == 0
    # P(drop image) = 0.3 except the 0.18 of rows that lost both and got one back at random
    assert kept_image == pytest.approx(0.7 + 0.18 / 2, abs=0.03)
    assert kept_text == pytest.approx(0.4 + 0.18 / 2, abs=0.03)
    # dropped rows are zeroed: nothing can read them
    assert float(out["image"][~out.mask("image")].abs().sum()) == 0.0


def test_already_missing_rows_stay_missing_and_eval_is_identity():
    batch = make_batch(200, missing_text_every=2)
    drop = ModalityDropout(0.5)
    out = drop.train()(batch)
    assert not bool((out.mask("text") & ~batch.mask("text")).any())
    assert drop.eval()(batch) is batch


def test_curriculum_ramps_the_rate():
    drop = ModalityDropout(0.8)
    cur = DropoutCurriculum(drop, warmup_steps=10)
    assert drop.rate("x") == 0.0

    class T:
        step = 5
    cur.on_step_end(T)
    assert drop.rate("x") == pytest.approx(0.4)
    T.step = 50
    cur.on_step_end(T)
    assert drop.rate("x") == pytest.approx(0.8)
    with pytest.raises(ValueError):
        ModalityDropout(1.5)


def test_missing_tokens_replace_only_absent_rows_and_learn():
    tokens = MissingTokens({"a": 3})
    feats = {"a": torch.ones(4, 3)}
    present = {"a": torch.tensor([True, False, True, False])}
    out = tokens(feats, present)["a"]
    assert torch.equal(out[0], torch.ones(3)) and torch.equal(out[1], tokens.tokens["a"].detach())
    out.sum().backward()
    assert torch.equal(tokens.tokens["a"].grad, torch.full((3,), 2.0))


def test_missing_token_model_gives_the_fusion_every_modality():
    enc = {"image": MLPEncoder(4, 8, hidden=8), "text": MLPEncoder(3, 8, hidden=8)}
    model = MultimodalModel(enc, EarlyFusion({"image": 8, "text": 8}, 8), build_head(8, 2, hidden=None))
    wrapped = MissingTokenModel(model, {"image": 8, "text": 8})
    batch = make_batch(6, missing_text_every=2)
    logits = wrapped(batch)
    assert logits.shape == (6, 2)
    # a missing row's output does not depend on its placeholder
    poisoned = batch.drop_modality("text", ~batch.mask("text"))
    poisoned.tensors["text"][~batch.mask("text")] = 1e3
    assert torch.equal(wrapped(poisoned), logits)
