"""Training paraphrases: more phrasings and unknown words, never the held-out set; words the model was
never trained on read as <unk>; the vocabulary only ever grows at its end."""
import json
import random
from pathlib import Path

import torch

from apps.dialogue import data as D
from apps.dialogue.questions import EXTRA_TEMPLATES, PREFIXES, SUFFIXES, TEMPLATES, embellish, make_dialogue
from apps.dialogue.scenes import PALETTE, SHAPES, SIZES, make_scene
from apps.dialogue.tokenizer import UNK, FastEncoder, make_tokenizer, vocabulary, words
from apps.dialogue.train import build_model, tie_unseen_words

TINY = {"text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                        "num_key_value_heads": 4}, "vision_hidden": 32}


def _template_words(templates) -> set[str]:
    return {w for t in templates for w in words(t) if not w.startswith("{")}


def _heldout_only_words() -> set[str]:
    train = _template_words([t for fam in TEMPLATES.values() for t in fam["train"]])
    train |= _template_words([t for group in (*EXTRA_TEMPLATES.values(), PREFIXES, SUFFIXES) for t in group])
    return _template_words([t for fam in TEMPLATES.values() for t in fam["heldout"]]) - train


def test_training_paraphrases_never_use_the_heldout_set():
    only = _heldout_only_words()
    assert only                                           # the held-out column does test unseen words
    heldout = [t.split("{")[0].strip() for fam in TEMPLATES.values() for t in fam["heldout"]]
    train_starts = {t.split("{")[0].strip() for fam in TEMPLATES.values() for t in fam["train"]}
    heldout = [h for h in heldout if h and h not in train_starts]
    for sample in D.generate_samples("dialogue", "train", 150, phrasing=D.TRAIN_PHRASING):
        for r in sample.rounds:
            q = " ".join(words(r["question"]))
            assert not only & set(q.split()), q
            assert not any(h in q for h in heldout if len(h) > 12), q


def test_embellish_keeps_the_content_and_reads_as_known_words():
    enc, vocab = FastEncoder(), set(vocabulary())
    # "that" alone is not content: the trailing clauses "that you see" / "that is visible" add it; the
    # coreference "that one" keeps its "one"
    content = set(PALETTE) | set(SHAPES) | set(SIZES) | {"it", "one", "earlier", "left", "right", "above",
                                                          "below", "closest", "furthest", "many", "colour", "size"}
    n_unk = n_changed = 0
    for seed in range(200):
        rng = random.Random(seed)
        for r in make_dialogue(make_scene(seed), random.Random(seed)):
            q = r["question"]
            e = embellish(q, rng)
            n_changed += e != q
            assert [w for w in words(e) if w in content] == [w for w in words(q) if w in content], (q, e)
            assert all(w in vocab for w in words(e)), e
            n_unk += enc.unk in enc(e)
    assert 0.05 < n_unk / 2000 < 0.4 and n_changed > 800
    # the typed form never glues "?" to the unknown word (it would read as "<", "unk", ">?")
    for seed in range(100):
        for r in make_dialogue(make_scene(seed), random.Random(seed), phrasing="paraphrase"):
            assert "<unk>?" not in r["question"] and all(w in vocab for w in words(r["question"])), r["question"]


def test_hf_tokenizer_agrees_on_paraphrased_questions():
    tok, enc = make_tokenizer(), FastEncoder()
    for sample in D.generate_samples("dialogue", "train", 20, phrasing="paraphrase"):
        for r in sample.rounds:
            assert tok(r["question"]).input_ids == enc(r["question"]), r["question"]


def test_words_never_trained_on_get_the_unknown_embedding():
    torch.manual_seed(0)
    model = build_model("vlm", TINY)
    vocab = vocabulary()
    emb = model.get_input_embeddings().weight
    before = emb.detach().clone()
    train = D.build("dialogue", "train", 4)
    names = tie_unseen_words(model, train.text)
    seen = set(torch.unique(train.text).tolist())
    unk = vocab.index(UNK)
    assert names and set(names) >= {"image", "things"} - {vocab[i] for i in seen}
    for i, w in enumerate(vocab):
        expected = before[unk] if w in names else before[i]
        assert torch.equal(emb[i], expected), w
    assert all(vocab[i] not in names for i in seen)


def test_vocabulary_only_grows_at_its_end():
    """Shipped checkpoints keep their embedding rows: every word of their tokenizer has the same id now."""
    for folder in ("scenes", "sort_of_clevr"):
        path = Path(__file__).resolve().parents[3] / "data" / "dialogue" / folder / "tokenizer.json"
        if not path.is_file():
            continue
        saved = json.loads(path.read_text())["model"]["vocab"]
        vocab = vocabulary()
        assert all(vocab[i] == w for w, i in saved.items()), folder


def test_trailing_clauses_and_unknown_nouns_reach_every_family():
    """A "do you ..." / "that you see" clause at the end of a question must not mark it as an existence
    question: training puts the family-neutral clauses on every family, and lets an unknown word
    stand for the generic noun ("how many <unk> are left of it ?")."""
    trailing = {" ".join(words(s)) for s in SUFFIXES if " " in s}
    families_with_clause, unknown_noun = set(), 0
    for sample in D.generate_samples("dialogue", "train", 150, phrasing=D.TRAIN_PHRASING):
        for r in sample.rounds:
            q = " ".join(w for w in words(r["question"]) if w != "?")
            if any(q.endswith(t) for t in trailing):
                families_with_clause.add(r["family"].replace("coref-", "").split("-")[0])
            unknown_noun += "many <unk> are" in q or "number of <unk>" in q
    assert families_with_clause >= {"exist", "count", "seek", "relate"}
    assert unknown_noun > 0
    # the held-out templates stay unseen as whole templates
    for fam, groups in TEMPLATES.items():
        assert not set(groups["heldout"]) & set(groups["train"] + EXTRA_TEMPLATES[fam])
