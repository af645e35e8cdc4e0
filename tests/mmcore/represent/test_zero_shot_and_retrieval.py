"""Zero-shot on held-out classes, a CLIP pair's retrieval, and the retrieval/probe metrics."""
import pytest
import torch

from mmcore.eval.probe import linear_probe
from mmcore.eval.retrieval import cross_modal_retrieval, ranks, retrieval_metrics
from mmcore.represent.clip_pair import ClipPair, SceneImageEncoder, train_clip_pair
from mmcore.represent.scenes import COLOURS, SHAPES, class_names, generate_scenes, held_out_classes
from mmcore.represent.text_encoder import Vocabulary
from mmcore.represent.zero_shot import SemanticZeroShot, train_semantic_zero_shot, zero_shot_accuracy

UNSEEN = held_out_classes()
SEEN = [c for c in range(len(COLOURS) * len(SHAPES)) if c not in UNSEEN]


@pytest.fixture(scope="module")
def scenes():
    return generate_scenes(1500, seed=0, classes=SEEN), generate_scenes(300, seed=1, classes=UNSEEN)


def test_held_out_classes_are_compositional(scenes):
    train, test = scenes
    assert len(UNSEEN) == 10
    assert set(train.label.tolist()).isdisjoint(test.label.tolist())
    assert set(train.colour.tolist()) == set(range(len(COLOURS))) and set(train.shape.tolist()) == set(range(len(SHAPES)))


def test_semantic_zero_shot_beats_chance_on_unseen_classes(scenes):
    train, test = scenes
    g = torch.Generator().manual_seed(0)
    # a compositional semantic space: class vector = colour word vector + shape word vector
    colour_vecs, shape_vecs = torch.randn(len(COLOURS), 32, generator=g), torch.randn(len(SHAPES), 32, generator=g)
    class_embeddings = torch.stack([colour_vecs[c] + shape_vecs[s] for c in range(len(COLOURS)) for s in range(len(SHAPES))])
    torch.manual_seed(0)
    model = SemanticZeroShot(SceneImageEncoder(32), 32, 32)
    train_semantic_zero_shot(model, train.images, train.label, class_embeddings, SEEN, epochs=5)
    acc = zero_shot_accuracy(model.predict(test.images, class_embeddings, UNSEEN), test.label)
    assert acc > 0.4, acc                                   # chance = 1/10
    with pytest.raises(ValueError, match="not in `seen`"):
        train_semantic_zero_shot(model, test.images, test.label, class_embeddings, SEEN, epochs=1)


def test_clip_pair_retrieves_captions_and_names_unseen_classes(scenes):
    train, test = scenes
    torch.manual_seed(0)
    pair = ClipPair(Vocabulary.from_corpus(train.captions), dim=32)
    losses = train_clip_pair(pair, train.images, train.captions, epochs=5)
    assert losses[-1] < 0.6 * losses[0]
    held = generate_scenes(200, seed=2, classes=SEEN)
    with torch.no_grad():
        metrics = cross_modal_retrieval(pair.embed_image(held.images), pair.embed_text(held.captions),
                                        a_ids=held.captions, b_ids=held.captions)
    assert metrics["a2b_R@1"] > 10 * metrics["a2b_chance_R@1"], metrics
    names = class_names()
    pred = torch.tensor(UNSEEN)[pair.zero_shot_logits(test.images, [names[c] for c in UNSEEN]).argmax(1)]
    assert zero_shot_accuracy(pred, test.label) > 0.3      # chance = 1/10


def test_retrieval_metrics_by_hand():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.2, 0.3, 0.1]])
    assert ranks(sim).tolist() == [1, 2, 3]
    m = retrieval_metrics(sim, ks=(1, 2))
    assert m["R@1"] == pytest.approx(1 / 3) and m["R@2"] == pytest.approx(2 / 3) and m["median_rank"] == 2
    # query 1 and 2 share an id with gallery 0/1: any of them counts
    m = retrieval_metrics(sim, ks=(1,), query_ids=["a", "b", "b"], gallery_ids=["a", "b", "b"])
    assert m["R@1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="square"):
        ranks(torch.zeros(2, 3))
    out = cross_modal_retrieval(torch.eye(4), torch.eye(4))
    assert out["a2b_R@1"] == 1.0 and out["b2a_median_rank"] == 1.0


def test_linear_probe_separates_and_rejects_bad_input():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(3, (400,), generator=g)
    x = torch.randn(400, 5, generator=g) + 2.0 * torch.nn.functional.one_hot(y, 5).float()
    r = linear_probe(x[:300], y[:300], x[300:], y[300:])
    assert r["accuracy"] > 0.85 and r["accuracy"] > r["majority_baseline"] + 0.4
    noise = linear_probe(torch.randn(300, 5, generator=g), y[:300], torch.randn(100, 5, generator=g), y[300:])
    assert noise["accuracy"] < 0.6
    with pytest.raises(ValueError, match="rows"):
        linear_probe(x[:300], y[:200], x[300:], y[300:])
