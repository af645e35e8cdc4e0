"""The conversation KV cache and dynamic batching change speed, never answers.

Reference: every turn recomputed from the whole conversation (the model's forward over the full
prompt for logits, ``generate`` for the answer).  Cached/batched turns must give the same answers
and logits within 1e-5 (+1e-6 relative), over full 10-round conversations: answered in ragged
batches, one evicted from the cache mid-way, one continued by a fresh engine (a restarted
server), and through the HTTP server with concurrent clients before and after a restart.
"""
import io
import random
import threading

import pytest
import torch
from PIL import Image

from apps.dialogue.answers import answer_ids
from apps.dialogue.batching import Batcher, BatchPolicy, Overloaded
from apps.dialogue.engine import DialogueEngine, Turn
from apps.dialogue.kv_cache import ConversationCache, ConversationState
from apps.dialogue.questions import make_dialogue
from apps.dialogue.scenes import make_scene, render

ROUNDS = 10


def _conversation(seed: int):
    scene = make_scene(22_000_000 + seed, split="test")
    return render(scene), [r["question"] for r in make_dialogue(scene, random.Random(seed), rounds=ROUNDS)]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread per op: on a shared 2-core machine a 2-thread OpenMP team mostly waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def conversations():
    return [_conversation(s) for s in range(3)]


@pytest.fixture(scope="module")
def reference(backend, conversations):
    """Per conversation, per round: (history, question, answer, full-forward logits [V]).

    The answer is the full forward's greedy choice among the answer words, which is generate's first
    step; the first conversation also runs ``generate`` itself to hold the two together."""
    allowed = answer_ids()
    out = []
    for c, (image, questions) in enumerate(conversations):
        history, rounds = [], []
        for q in questions:
            with torch.inference_mode():
                logits = backend.model(**backend._inputs(image, history, q)).logits[0, -1].float()
            answer = backend.tokenizer.decode([int(allowed[logits[allowed].argmax()])]).strip()
            if c == 0:
                assert "".join(backend.generate_stream(image, history, q)).strip() == answer
            rounds.append((list(history), q, answer, logits))
            history.append((q, answer))
        out.append(rounds)
    return out


def _engine(backend, cache_bytes=64 * 2**20):
    return DialogueEngine(backend.model, backend.tokenizer, backend._objects, backend.max_new_tokens, cache_bytes,
                          lock=backend.lock)


def _check(turn: Turn, ref) -> None:
    history, question, answer, logits = ref
    assert turn.error is None, turn.error
    assert turn.answer == answer, (question, turn.answer, answer)
    # float32 kernels on other shapes (one new round vs the whole prompt, padded batches) round
    # differently: measured up to ~1.1e-5 on logits of magnitude ~10, hence 1e-5 + 1e-6 relative
    assert torch.allclose(turn.logits, logits, atol=1e-5, rtol=1e-6), (question, (turn.logits - logits).abs().max())


def test_batched_cached_turns_match_full_recomputation(backend, conversations, reference):
    engine = _engine(backend)
    # ragged: the third conversation starts three rounds late, so each batch mixes history lengths
    # (and first turns, which rebuild, with continued ones)
    for step in range(ROUNDS + 3):
        jobs = [(c, step - (3 if c == 2 else 0)) for c in range(3)]
        jobs = [(c, r) for c, r in jobs if 0 <= r < ROUNDS]
        turns = [Turn(conversations[c][0], *reference[c][r][:2]) for c, r in jobs]
        engine.run(turns)
        for (c, r), turn in zip(jobs, turns):
            _check(turn, reference[c][r])
            if r > 0:   # everything but the new round came from the cache
                assert turn.reused == len(backend._inputs(conversations[c][0], *reference[c][r - 1][:2])["input_ids"][0])
    assert engine.cache.info()["hits"] == 3 * (ROUNDS - 1)


def test_eviction_mid_conversation_and_a_fresh_engine_rebuild_from_the_history(backend, conversations, reference):
    image_a, _ = conversations[0]
    image_b, _ = conversations[1]
    # room for about one long conversation state: B's turns push A's states out
    engine = _engine(backend, cache_bytes=400_000)
    for r in range(5):
        _check(engine.run([Turn(image_a, *reference[0][r][:2])])[0], reference[0][r])
    for r in range(ROUNDS):
        _check(engine.run([Turn(image_b, *reference[1][r][:2])])[0], reference[1][r])
    assert engine.cache.info()["evictions"] > 0 and engine.cache.bytes <= 400_000
    resumed = engine.run([Turn(image_a, *reference[0][5][:2])])[0]
    _check(resumed, reference[0][5])
    assert resumed.reused == 0          # evicted: rebuilt from the history
    for r in range(6, ROUNDS):
        turn = engine.run([Turn(image_a, *reference[0][r][:2])])[0]
        _check(turn, reference[0][r])
        assert turn.reused > 0
    # a restarted server: a new engine, the stored history, the same answers
    fresh = _engine(backend)
    for r in range(7, ROUNDS):
        turn = fresh.run([Turn(image_a, *reference[0][r][:2])])[0]
        _check(turn, reference[0][r])
        assert (turn.reused == 0) == (r == 7)


def test_the_server_with_cache_and_batching_answers_concurrent_clients_like_generate(backend, live_server,
                                                                                     conversations, reference):
    import base64

    import httpx

    state, restart = live_server
    backend.configure(batching=BatchPolicy(max_batch=8, max_wait_ms=5))
    try:
        def data_url(img: Image.Image) -> str:
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

        def ask(url, cid, question, image=None):
            content = [{"type": "text", "text": question}] + (
                [{"type": "image_url", "image_url": {"url": data_url(image)}}] if image is not None else [])
            body = {"messages": [{"role": "user", "content": content}], "stream": bool(len(question) % 2)}
            if cid:
                body["conversation_id"] = cid
            with httpx.Client(timeout=120) as client:
                r = client.post(url + "/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            if not body["stream"]:
                return r.json()["conversation_id"], r.json()["choices"][0]["message"]["content"]
            import json
            chunks = [json.loads(line[6:]) for line in r.text.splitlines()
                      if line.startswith("data: ") and line != "data: [DONE]"]
            return chunks[0]["conversation_id"], "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)

        answers, cids, errors = {}, {}, []

        def client(c, rounds, url):
            try:
                image = conversations[c][0]
                for r in rounds:
                    cid, answers[c, r] = ask(url, cids.get(c), reference[c][r][1], image if c not in cids else None)
                    cids[c] = cid
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def clients(rounds, url):
            threads = [threading.Thread(target=client, args=(c, rounds, url)) for c in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors

        clients(range(6), state["url"])
        backend.engine.cache.clear()          # a restart: new process, empty cache, SQLite history
        url = restart()
        clients(range(6, ROUNDS), url)
        assert {k: v.strip() for k, v in answers.items()} == {(c, r): reference[c][r][2] for c in range(3)
                                                              for r in range(ROUNDS)}
        assert backend.batcher.stats["items"] == 3 * ROUNDS
    finally:
        backend.configure()


def _state(n_tokens: int, image_key: bytes = b"img", ids=None) -> ConversationState:
    kv = torch.zeros(4, n_tokens, 16)
    return ConversationState(image_key, torch.zeros(8, 64), torch.ones(8, dtype=torch.bool), None, None,
                             ids=list(ids if ids is not None else range(n_tokens)), past=[(kv, kv.clone())])


def test_the_cache_keeps_to_its_byte_budget_and_finds_the_longest_prefix():
    boundary = 99
    cache = ConversationCache(max_bytes=3 * _state(10).nbytes)
    short, long_ = _state(3, ids=[1, 2, boundary]), _state(6, ids=[1, 2, boundary, 4, 5, boundary])
    cache.put(short)
    cache.put(long_)
    assert cache.longest_prefix(b"img", [1, 2, boundary, 4, 5, boundary, 7, boundary], boundary) is long_
    assert cache.longest_prefix(b"img", [1, 2, boundary, 8, boundary], boundary) is short
    assert cache.longest_prefix(b"other", [1, 2, boundary, 8, boundary], boundary) is None
    # the prompt itself is never its own prefix: the last token's logits must be computed
    assert cache.longest_prefix(b"img", [1, 2, boundary], boundary) is None
    for i in range(10):
        cache.put(_state(10, image_key=bytes([i])))
        assert cache.bytes <= cache.max_bytes
    assert cache.stats["evictions"] >= 8 and len(cache) == 3


def test_batcher_gathers_what_arrives_while_busy_and_caps_batch_and_queue():
    started, release, batches = threading.Event(), threading.Event(), []

    def run(items):
        batches.append(list(items))
        started.set()
        release.wait(10)

    batcher = Batcher(run, BatchPolicy(max_batch=3, max_wait_ms=0, max_queue=5))
    try:
        batcher.submit(0)
        assert started.wait(10)
        for i in range(1, 6):
            batcher.submit(i)
        with pytest.raises(Overloaded):
            batcher.submit(6)
        release.set()
        for _ in range(100):
            if sum(len(b) for b in batches) == 6:
                break
            threading.Event().wait(0.05)
    finally:
        release.set()
        batcher.close()
    assert batches == [[0], [1, 2, 3], [4, 5]]
