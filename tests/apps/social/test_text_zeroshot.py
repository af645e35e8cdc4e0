"""Text encoders: mmcore's MiniLM with its disk cache (a second encoder answers from disk without
running the model), the hashed fallback's determinism and missing-text masking, and zero-shot
labelling with its prior correction and abstention."""
import numpy as np
import pytest

from apps.social.text import encode_minilm, hashed_features, minilm_encoder
from mmcore.represent.text_encoder import text_hash


def test_hashed_features_deterministic_and_masked():
    from apps.social.text import encode_texts

    texts = ["This is a HOAX #vote", None, "", "official results confirmed"]
    x, present = encode_texts(texts)
    assert present.tolist() == [True, False, False, True]
    assert np.allclose(np.linalg.norm(x[present], axis=1), 1) and not x[~present].any()
    assert np.array_equal(x, hashed_features(texts))
    assert np.array_equal(hashed_features(["a hoax"]), hashed_features(["A HOAX"]))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return minilm_encoder(tmp_path_factory.mktemp("cache"))


def test_minilm_cache_round_trip(encoder):
    texts = ["the bridge reopens monday", "this is a hoax", None, "the bridge reopens monday"]
    emb, present = encode_minilm(encoder, texts)
    assert emb.shape == (4, 384) and present.tolist() == [True, True, False, True]
    assert np.allclose(np.linalg.norm(emb[present], axis=1), 1, atol=1e-5)
    assert np.array_equal(emb[0], emb[3]) and not emb[2].any()
    again = minilm_encoder(encoder.cache_path.parent)
    cached, _ = encode_minilm(again, texts[:2])
    assert again.encoded_count == 0  # answered from the cache file: the model never ran
    # every row is looked up by text hash: a thousand copies cost no encoding and match the originals
    many, present_many = encode_minilm(again, texts * 250)
    assert again.encoded_count == 0 and many.shape == (1000, 384) and np.array_equal(many[4:8], emb)
    assert not many[~present_many].any()
    assert np.array_equal(cached, emb[:2]) and text_hash(texts[0]) in again.cache
    # semantic sanity: paraphrases are closer than unrelated sentences
    e = encoder.encode(["the vote was rigged", "the election was a fraud", "I baked bread today"]).numpy()
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_minilm_backend_own_cache_file_and_cli_option(tmp_path, capsys):
    """An int8 backend writes its own cache file (the cache is keyed by text only), and the CLI's
    --text-backend choices are the encoder's backends."""
    import argparse

    from apps.social.cli import cmd_train, register
    from mmcore.represent.text_quant import BACKENDS

    quant = minilm_encoder(tmp_path, backend="torch-int8")
    encode_minilm(quant, ["the bridge reopens monday"])
    assert quant.cache_path.name == "minilm-torch-int8.safetensors" and quant.cache_path.exists()
    fp32 = minilm_encoder(tmp_path)
    encode_minilm(fp32, ["the bridge reopens monday"])
    assert fp32.encoded_count == 1 and fp32.cache_path.name == "minilm.safetensors"  # not answered by int8 rows
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    for command in ("train", "analyze"):
        assert parser.parse_args(["social", command, "d"]).text_backend == "torch"
        for backend in BACKENDS:
            assert parser.parse_args(["social", command, "d", "--text-backend", backend]).text_backend == backend
        with pytest.raises(SystemExit):
            parser.parse_args(["social", command, "d", "--text-backend", "int4"])
    args = parser.parse_args(["social", "train", str(tmp_path), "--text-backend", "onnx-int8"])
    assert cmd_train(args) == 2 and "needs --text-encoder minilm" in capsys.readouterr().err


def test_zero_shot_labels_from_names(encoder):
    from apps.social.zeroshot import zero_shot

    texts = ["this vaccine story is a hoax and a scam, totally fake", "officials confirmed and verified the results",
             None, "fake news, rigged coverup"]
    pred, probs = zero_shot(texts, ["misinformation", "reliable information"], encoder=encoder, correct_prior=False)
    assert pred.tolist() == [0, 1, -1, 0]
    assert np.allclose(probs[[0, 1, 3]].sum(1), 1) and np.isnan(probs[2]).all()


def test_zero_shot_abstains_where_the_text_does_not_say(encoder):
    from apps.social.zeroshot import zero_shot

    texts = ["a hoax they do not want you to know", "verified by reliable sources", "the bridge reopens monday",
             "the train was late again", "debunked misinformation spreading again", "an accurate well sourced account"]
    pred, _ = zero_shot(texts, ["misinformation", "reliable"], encoder=encoder, abstain_margin=0.05)
    assert pred[[0, 4]].tolist() == [0, 0] and pred[[1, 5]].tolist() == [1, 1]
    assert pred[2] == -1  # a neutral sentence gets no label rather than a guess


def test_pipeline_zero_shot_uses_the_runs_text_backend(encoder, monkeypatch):
    """`mm social analyze --text-backend onnx-int8 --zero-shot ...` labels through that backend,
    with one encoder for both the abstaining and the forced pass."""
    import types

    import pandas as pd
    import torch

    from apps.social import pipeline, text

    built = []
    monkeypatch.setattr(text, "minilm_encoder",
                        lambda cache_dir=None, device="auto", backend="torch": built.append(backend) or encoder)
    texts = ["this is a hoax, they lie", "official results confirmed by the county", None]
    store = types.SimpleNamespace(post=types.SimpleNamespace(present={"text": torch.tensor([True, True, False])}),
                                  posts=pd.DataFrame({"text": texts}), post_label=torch.tensor([0, 1, 1]),
                                  post_classes=["misinformation", "reliable"])
    posts = pd.DataFrame({"post_id": ["a", "b", "c"]})
    out = pipeline._zero_shot(store, posts, ["misinformation", "reliable"], 10, None, 0.0, "onnx-int8")
    assert built == ["onnx-int8"]
    assert out["posts"] == 2 and posts["zero_shot"].iloc[:2].notna().all() and posts["zero_shot"].iloc[2] is None
