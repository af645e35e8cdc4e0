"""Multimodal skip-gram: grounded vectors capture visual similarity better than text-only ones."""
import pytest
import torch

from mmcore.represent.grounded_corpus import GroundedWorld
from mmcore.represent.text_encoder import Vocabulary
from mmcore.represent.word_embeddings import (
    MultimodalSkipGram,
    similarity_correlation,
    skipgram_pairs,
    train_skipgram,
)


def test_skipgram_pairs_window():
    vocab = Vocabulary(["a", "b", "c"])
    pairs = skipgram_pairs(["a b c"], vocab, window=1).tolist()
    a, b, c = vocab.index["a"], vocab.index["b"], vocab.index["c"]
    assert sorted(pairs) == sorted([[a, b], [b, a], [b, c], [c, b]])
    with pytest.raises(ValueError, match="no skip-gram pairs"):
        skipgram_pairs(["a"], vocab)


def test_grounding_improves_visual_similarity():
    world = GroundedWorld.default()
    texts = world.captions(1000, seed=0)
    vocab = Vocabulary.from_corpus(texts)
    visual = dict(zip(world.nouns, world.visual_features(views=4)))
    reference = world.visual_similarity()
    scores = {}
    for name, feats in (("text", None), ("grounded", visual)):
        torch.manual_seed(0)
        model = MultimodalSkipGram(vocab, dim=32, visual=feats, visual_weight=2.0)
        losses = train_skipgram(model, texts, epochs=5, batch_size=2048, lr=0.03)
        assert losses[-1] < losses[0]
        scores[name] = similarity_correlation(model.word_vectors(world.nouns), reference)
    assert scores["grounded"] > scores["text"] + 0.2, scores
    with pytest.raises(ValueError, match="not in the vocabulary"):
        MultimodalSkipGram(vocab, visual={"zebra": torch.zeros(28)})
