"""The result-conversation parser without result folders: template sets, linking, training, save/load,
coreference state and follow-ups."""
from __future__ import annotations

import random

import pytest

from apps.dialogue.results.generate import dialogue, synthetic_inventory, training_pairs
from apps.dialogue.results.linker import Lexicon, link
from apps.dialogue.results.paraphrase import G, expand
from apps.dialogue.results.parser import DialogueState, IntentModel, Parser
from apps.dialogue.results.program import Program
from apps.dialogue.results.templates import T, normalise, templates


def test_heldout_templates_are_never_trained_on():
    """No held-out template is a train template or a paraphrase the training draws, for any intent
    (the grammar can produce a few; :func:`templates` draws those again)."""
    rng = random.Random(0)
    heldout = {normalise(t) for _, held in T.values() for t in held}
    assert not heldout & {normalise(t) for train, _ in T.values() for t in train}
    drawn = {normalise(t) for _ in range(400) for intent in T for t in templates(intent, "paraphrase", rng)}
    assert not heldout & drawn
    raw = {normalise(expand(p, rng)) for pats in G.values() for p in pats for _ in range(400)}
    assert heldout & raw            # the filter is needed: the raw grammar does reach some held-out templates


def test_linker_replaces_entities_of_the_context():
    lex = Lexicon({"u00001": "u00001", "alice_w": "u00001", "u00002": "u00002"}, ["climate"])
    got = link("How are @alice_w and u00002 connected, and #climate on the CT scan? top 3", lex)
    assert got.users == ["u00001", "u00002"] and got.tags == ["climate"] and got.modalities == ["ct"]
    assert got.numbers == [3] and "<user>" in got.text and "alice" not in got.text
    assert link("is it a bleed on the magnetic resonance?", Lexicon()).text == "is it a <cls> on the <mod> ?"
    assert link("what about @ghost?", lex).users == ["@ghost"]        # unknown account: kept, the executor says so


@pytest.fixture(scope="module")
def small_parser():
    texts, intents = training_pairs(250, seed=5)
    return Parser(IntentModel.train(texts, intents, seed=5), 0.2)


def test_ngram_parser_trains_and_round_trips(small_parser, tmp_path):
    model = small_parser.model
    model.save(tmp_path)
    again = IntentModel.load(tmp_path)
    rng = random.Random(9)
    for q in ("where is the lesion ?", "is <user> a bot ?", "and on the <mod> ?", "what is the patient's age ?"):
        a, b = model.probs(q), again.probs(q)
        assert model.labels[int(a.argmax())] == again.labels[int(b.argmax())] and abs(a - b).max() < 0.02
    # held-out phrasings over synthetic inventories the parser never saw
    ok = n = 0
    for i in range(20):
        inv = synthetic_inventory(rng, "medical" if i % 2 else "social")
        lex = Lexicon(inv.lexicon_users(), inv.tags)
        state = DialogueState()
        for r in dialogue(inv, rng, 8, "heldout"):
            prog, _ = small_parser.parse(r["question"], state, inv.kind, lex)
            ok, n = ok + (str(prog) == r["program"]), n + 1
    assert ok / n >= 0.75, ok / n        # measured 0.80 with 250 training dialogues; the shipped parsers use 1000


def test_coreference_and_followups(small_parser):
    lex = Lexicon({"u1": "u1", "bob": "u2", "u2": "u2"}, ["climate", "vaccine"])
    state = DialogueState()

    def ask(q, kind="social"):
        return str(small_parser.parse(q, state, kind, lex)[0])

    assert ask("which community is @bob in?") == "community(of=u2)"
    assert ask("how many posts are there?") == "counts()"
    assert ask("who are the top 3 accounts by degree?") == "top(accounts, by=degree, k=3)"
    assert ask("is that account a bot?") == "bot(of=u2)"               # distance 3 back to @bob
    assert ask("what about u1?") == "bot(of=u1)"
    assert ask("how are they connected?") == "path(between=u2,u1)"
    assert ask("how did #climate evolve over time?") == "timeline(hashtag=climate)"
    assert ask("and #vaccine?") == "timeline(hashtag=vaccine)"
    med = DialogueState()
    steps = [("where is the lesion?", "lesion.location()"), ("how big is it?", "lesion.volume()"),
             ("and on the CT?", "lesion.volume(modality=ct)")]
    for q, want in steps:
        assert str(small_parser.parse(q, med, "medical", Lexicon())[0]) == want


def test_programs_print_and_refuse_unknown_functions():
    assert str(Program.make("top", by="pagerank", k=5)) == "top(accounts, by=pagerank, k=5)"
    assert str(Program.make("path", between=["a", "b"])) == "path(between=a,b)"
    assert str(Program.make("lesion.volume", modality=None)) == "lesion.volume()"
    with pytest.raises(ValueError, match="unknown function"):
        Program.make("delete_everything")


def test_tool_specs_and_tool_calls_map_to_programs():
    from apps.dialogue.results.tools import ToolError, program_of, tool_specs

    medical = {t["function"]["name"] for t in tool_specs("medical")}
    social = {t["function"]["name"] for t in tool_specs("social")}
    assert {"lesion_volume", "diagnosis", "registration_quality"} <= medical and not medical & social
    assert {"top", "path", "timeline", "subgraph_image"} <= social
    assert str(program_of("lesion_volume", '{"modality": "ct"}')) == "lesion.volume(modality=ct)"
    assert str(program_of("top", {"by": "degree", "k": 3})) == "top(accounts, by=degree, k=3)"
    assert str(program_of("path", {"between": ["a", "b"]})) == "path(between=a,b)"
    for name, args, msg in (("rm_rf", "{}", "unknown tool"), ("top", '{"by": "likes"}', "must be one of"),
                            ("top", '{"k": "5"}', "must be integer"), ("community", "{}", "'of' is required"),
                            ("lesion_volume", "{bad", "not valid JSON"), ("counts", '{"x": 1}', "unknown argument")):
        with pytest.raises(ToolError, match=msg):
            program_of(name, args)


def test_linker_marks_references_back_to_accounts():
    lex = Lexicon({"u1": "u1", "bob": "u2", "her": "u3"}, ["climate"])
    got = link("what links both of them?", lex)
    assert got.text == "what links <refs> ?" and got.refs == [2] and not got.users
    assert link("is the same account a bot", lex).text == "is <ref> a bot"
    assert link("is @her a bot", lex).users == ["u3"]                  # a name wins over the pronoun
    assert link("how big is it?", Lexicon()).text == "how big is it ?"  # no accounts (medical): no references


def test_coreference_three_and_more_turns_back(small_parser):
    """An account named 3-6 turns earlier, with unrelated questions (other accounts' absence, hashtags,
    unanswerable ones) in between, is still the one a pronoun resolves to; on generated dialogues
    the accuracy at distance >= 3 stays within 3 points of distance 1."""
    from apps.dialogue.results.evaluate import validate

    lex = Lexicon({"u1": "u1", "bob": "u2", "u2": "u2"}, ["climate", "vaccine"])
    state = DialogueState()

    def ask(q):
        return str(small_parser.parse(q, state, "social", lex)[0])

    assert ask("is @bob a bot?") == "bot(of=u2)"
    assert ask("how did #climate evolve over time?") == "timeline(hashtag=climate)"
    assert ask("what is the capital of france?") == "abstain()"
    assert ask("how many posts are there?") == "counts()"
    assert ask("which community is that account in?") == "community(of=u2)"      # 4 turns back
    assert ask("what is the degree of u1?") == "user.stat(of=u1, by=degree)"
    for q in ("who are the top 3 accounts by degree?", "which accounts are bridges?", "tell me a joke"):
        ask(q)
    assert ask("how are those two connected?") == "path(between=u2,u1)"          # 5 and 4 turns back
    assert ask("how central is him?") == "user.stat(of=u1, by=pagerank)"
    rep = validate(small_parser, 150, seed=3, rounds=12, phrasing="train")
    d = rep["by_distance"]
    assert d[">=3"]["n"] >= 30 and d["1"]["n"] >= 30, d
    assert d[">=3"]["accuracy"] >= d["1"]["accuracy"] - 0.03, d


def test_linker_hounsfield_means_ct_and_account_shaped_words_are_accounts():
    lex = Lexicon({"u00007": "u00007", "user_u00007": "u00007"}, [])
    got = link("what HU does the lesion have?", Lexicon())
    assert got.implied_modalities == ["ct"] and got.modalities == [] and "hu" in got.text.split()
    assert link("how many hounsfield units is it?", Lexicon()).implied_modalities == ["ct"]
    assert link("how bright is the lesion?", Lexicon()).implied_modalities == []
    got = link("what links @user_u00007 and u99999?", lex)
    assert got.users == ["u00007", "@u99999"]
    assert link("is it on t1?", lex).users == []


def test_wrong_kind_message_only_when_the_question_names_that_kind():
    from apps.dialogue.results.parser import _names_kind

    assert _names_kind("which community is <user> in ?", "social")
    assert not _names_kind("how long did the analysis take ?", "social")
    assert _names_kind("how big is the lesion ?", "medical")
