"""Incremental turns for SceneVLM: a turn computes only its new tokens, many turns per forward pass.

Why this is exact.  In the prompt ``USER: q1 <image>*K ASSISTANT: a1 </s> USER: q2 <image>*K ASSISTANT:``
every input embedding depends only on what comes before it: a word is its embedding; round r's
image tokens are the reasoner's output for (image, q_r, the mention memory of rounds < r); round
r's ``ASSISTANT:`` carries that reasoner's summary.  The mention memory never reads answers.  So
the language model's keys/values of a finished prefix, and the mention memory of its rounds, are
what a full recomputation would produce again: a new turn needs only

1. the reasoner on the new round's image group (one group of K objects + its question words), with
   the recency of each object computed from the stored mentions (:func:`recency`);
2. the causal language model on the new tokens (``a_prev </s> USER: q <image>*K ASSISTANT:``),
   attending to the cached keys/values;
3. one answer: the argmax over the answer vocabulary (then ``</s>``, which needs no forward).

Batching (``run`` with several turns): the reasoner runs the new groups of all turns together
(question words padded, masked); the language model runs one forward over ``[B, P + S]`` where
row i's cached prefix (length ``L_i``) is right-aligned in the first ``P = max L_i`` columns and
its new tokens (length ``S_i``) left-aligned in the last ``S = max S_i``; padding is masked, and
position ids are each row's true positions (``L_i + j``).  No query is ever fully masked (every
pad query follows a real token of its row), and row i's new cache is the contiguous slice
``[P - L_i, P + S_i)``.

A turn whose conversation has no usable state (first turn, evicted, another process, a prompt
cut from the front) is rebuilt from its full prompt: the reasoner's rounds one after another (as
:func:`reasoner.reason` resolves them), one language-model prefill.
"""
from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass, field

import torch
from PIL import Image
from transformers import DynamicCache

from .answers import answer_ids
from .kv_cache import ConversationCache, ConversationState
from .prompt import BadInput, prompt_ids
from .reasoner import question_words, word_match
from .tokenizer import ASSISTANT, USER, vocabulary


@dataclass
class Turn:
    """One request: in (image, history, question), out (answer, logits, error).

    ``pieces`` (optional) receives the answer text as soon as it is chosen, then ``None``.
    """
    image: Image.Image
    history: list[tuple[str, str]]
    question: str
    pieces: queue.Queue | None = None
    answer: str | None = None
    logits: torch.Tensor | None = None      # [V] logits of the answer step
    error: BaseException | None = None
    reused: int = 0                         # prompt tokens whose keys/values came from the cache
    computed: int = 0                       # prompt tokens run through the model


@dataclass
class _Group:
    """A new image group: its round, question words, and where its tokens/summary go in the suffix."""
    round: int
    word_ids: torch.Tensor            # [L]
    words: torch.Tensor               # [L, D]
    image_at: torch.Tensor            # [K] positions of its <image> tokens in the suffix
    assistant_at: torch.Tensor        # positions of the ASSISTANT: it closes


@dataclass
class _Job:
    turn: Turn
    ids: list[int]
    image_key: bytes
    state: ConversationState | None
    suffix: list[int] = field(default_factory=list)
    embeds: torch.Tensor | None = None
    groups: list[_Group] = field(default_factory=list)


def recency(mentions: list[int], round_: int, slots: int) -> list[int]:
    """Rounds since each slot was last in focus before ``round_`` (0 = never), as
    :func:`reasoner.recency_from_mentions` computes it for one group."""
    rec = [0] * slots
    for r, m in enumerate(mentions[: max(round_, 0)]):    # ascending: the latest mention wins
        if 0 <= m < slots:
            rec[m] = round_ - r
    return rec


def image_key(image: Image.Image) -> bytes:
    return hashlib.blake2b(f"{image.mode}{image.size}".encode() + image.tobytes(), digest_size=16).digest()


class DialogueEngine:
    """Answers turns of SceneVLM models with a reasoner, reusing each conversation's state.

    ``objects_fn(image) -> {"object_pixels" [K,3,P,P], "object_geometry" [K,9], "object_mask" [K]}``
    is the backend's own region extraction; ``lock`` serialises the model with the backend's
    other users.  The answer contract is the embedded backend's: one word of the answer
    vocabulary, then ``</s>``.
    """

    def __init__(self, model, tokenizer, objects_fn, max_new_tokens: int = 4, cache_bytes: int = 256 * 2**20,
                 lock: threading.Lock | None = None) -> None:
        if not self.supports(model):
            raise ValueError("the incremental engine needs a SceneVLM with a reasoner (reasoner_layers > 0)")
        self.model, self.tokenizer, self.objects_fn = model, tokenizer, objects_fn
        self.max_new_tokens = max_new_tokens
        self.cache = ConversationCache(cache_bytes)
        self.lock = lock or threading.Lock()
        # torch's thread count as set where the engine is made: threads that did not call
        # set_num_threads themselves (a batcher, a server's pool) would otherwise run a default-sized
        # OpenMP team, 100x slower per op here on a loaded 2-core machine
        self.num_threads = torch.get_num_threads()
        vocab = vocabulary()
        self.user_id, self.assistant_id = vocab.index(USER), vocab.index(ASSISTANT)
        self.vocab = vocab

    @staticmethod
    def supports(model) -> bool:
        config = getattr(model, "config", None)
        return getattr(config, "model_type", None) == "mmcore_scene_vlm" and bool(config.reasoner_layers)

    # ------------------------------------------------------------------ public
    def run(self, turns: list[Turn]) -> list[Turn]:
        """Answer ``turns`` together (one reasoner pass per round step, one language-model pass).

        Bad input sets that turn's ``error`` (:class:`BadInput`) and leaves the others alone; an
        unexpected failure sets every unanswered turn's ``error``.
        """
        jobs: list[_Job] = []
        try:
            with self.lock, torch.inference_mode():
                torch.set_num_threads(self.num_threads)
                jobs = self._prepare(turns)
                if jobs:
                    self._start_states([j for j in jobs if j.state is None])
                    self._embed(jobs)
                    logits = self._forward(jobs)
                    self._answer(jobs, logits)
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request
            for t in turns:
                if t.answer is None and t.error is None:
                    t.error = exc
        finally:
            for t in turns:
                if t.pieces is not None:
                    t.pieces.put(None)
        return turns

    # ------------------------------------------------------------------ steps
    def _prepare(self, turns: list[Turn]) -> list[_Job]:
        jobs = []
        cfg = self.model.config
        for t in turns:
            if t.image is None:
                t.error = BadInput("this model answers questions about an image: send one first")
                continue
            try:
                ids = prompt_ids(self.tokenizer, cfg, self.max_new_tokens, t.history, t.question)
            except BadInput as exc:
                t.error = exc
                continue
            ikey = image_key(t.image)
            state = self.cache.longest_prefix(ikey, ids, self.assistant_id) if self.cache.max_bytes else None
            jobs.append(_Job(t, ids, ikey, None if state is None else state.child()))
        return jobs

    def _start_states(self, jobs: list[_Job]) -> None:
        """Object tokens of each new conversation's image (one vision pass for all of them)."""
        if not jobs:
            return
        device = self.model.device
        objs = [self.objects_fn(j.turn.image) for j in jobs]
        stacked = {name: torch.stack([o[name] for o in objs]).to(device) for name in objs[0]}
        feats = self.model.image_features(stacked["object_pixels"], stacked["object_geometry"], stacked["object_mask"])
        # image_features leaves the reasoner's per-slot tables in model._slots for the forward that
        # follows; here they are kept with the conversation instead
        slots, self.model._slots, self.model._aux = self.model._slots, {}, {}
        words, xy = slots.get("words"), slots.get("xy")
        for i, j in enumerate(jobs):
            j.state = ConversationState(j.image_key, feats[i], stacked["object_mask"][i],
                                        None if words is None else words[i], None if xy is None else xy[i])

    def _embed(self, jobs: list[_Job]) -> None:
        """Input embeddings of every job's new tokens: words, then the reasoner's image tokens and
        summaries, new rounds resolved in order (step s runs the s-th new group of every job)."""
        model, k = self.model, self.model.config.num_image_tokens
        table = model.get_input_embeddings()
        for j in jobs:
            j.suffix = j.ids[len(j.state.ids):]
            sid = torch.tensor([j.suffix], device=model.device)
            j.embeds = table(sid)[0]
            is_image = sid == model.config.image_token_id
            if not bool(is_image.any()):
                continue
            if int(is_image.sum()) % k:
                raise ValueError(f"the prompt's <image> tokens are not in groups of {k}")
            _, group_round, words, word_mask, owner_table, word_ids = question_words(
                sid, j.embeds[None], is_image, k, self.vocab, model.config.pad_token_id)
            image_at = is_image[0].nonzero().view(-1, k)
            segment = (sid[0] == self.user_id).long().cumsum(0)
            assistant = (sid[0] == self.assistant_id).nonzero().view(-1)
            owner = owner_table[0, segment[assistant]]
            for g in range(len(group_round)):
                n = int(word_mask[g].sum())
                j.groups.append(_Group(j.state.rounds + int(group_round[g]), word_ids[g, :n], words[g, :n],
                                       image_at[g], assistant[owner == g]))
        step = 0
        while True:
            batch = [(j, j.groups[step]) for j in jobs if len(j.groups) > step]
            if not batch:
                break
            self._reason(batch)
            step += 1

    def _reason(self, batch: list[tuple[_Job, _Group]]) -> None:
        """One reasoner pass over one new group of each job in ``batch`` (see reasoner.reason)."""
        model, k = self.model, self.model.config.num_image_tokens
        states = [j.state for j, _ in batch]
        dtype = batch[0][0].embeds.dtype
        objects = torch.stack([s.objects for s in states]).to(dtype)
        mask = torch.stack([s.object_mask for s in states])
        length = max(1, max(len(g.word_ids) for _, g in batch))
        words = objects.new_zeros(len(batch), length, objects.shape[-1])
        word_mask = torch.zeros(len(batch), length, dtype=torch.bool, device=objects.device)
        word_ids = torch.full((len(batch), length), model.config.pad_token_id, dtype=torch.long, device=objects.device)
        for i, (_, g) in enumerate(batch):
            n = len(g.word_ids)
            words[i, :n], word_mask[i, :n], word_ids[i, :n] = g.words, True, g.word_ids
        rec = torch.tensor([recency(s.mentions, g.round, k) for s, (_, g) in zip(states, batch)], device=objects.device)
        extra = {}
        if states[0].slot_words is not None:
            extra["match"] = word_match(torch.stack([s.slot_words for s in states]), word_ids, word_mask)
        if states[0].xy is not None:
            extra["xy"] = torch.stack([s.xy for s in states]).to(dtype)
        res = model.reasoner(objects, mask, words, word_mask, rec, **extra)
        tokens = torch.where(mask[..., None], res.tokens, model.empty_slot.to(res.tokens.dtype)).to(dtype)
        picks = res.pointer.argmax(-1).tolist()
        for i, (j, g) in enumerate(batch):
            j.embeds[g.image_at] = tokens[i]
            j.embeds[g.assistant_at] += res.summary[i].to(dtype)
            if g.round >= 0:
                mentions = j.state.mentions
                mentions.extend([-1] * (g.round + 1 - len(mentions)))
                mentions[g.round] = -1 if picks[i] == k else picks[i]

    def _forward(self, jobs: list[_Job]) -> torch.Tensor:
        """One language-model pass over every job's new tokens; ``[B, V]`` logits of each job's last
        token; each job's state gets its extended keys/values."""
        lm = self.model.language_model
        device = self.model.device
        past_len = [len(j.state.ids) for j in jobs]
        new_len = [len(j.suffix) for j in jobs]
        p, s, b = max(past_len), max(new_len), len(jobs)
        embeds = jobs[0].embeds.new_zeros(b, s, jobs[0].embeds.shape[-1])
        attention = torch.zeros(b, p + s, dtype=torch.long, device=device)
        positions = torch.zeros(b, s, dtype=torch.long, device=device)
        for i, j in enumerate(jobs):
            embeds[i, : new_len[i]] = j.embeds
            attention[i, p - past_len[i]: p + new_len[i]] = 1
            positions[i] = torch.arange(past_len[i], past_len[i] + s, device=device)
        cache = DynamicCache()
        if p:
            ref = next(j.state.past for j in jobs if j.state.past)
            for layer in range(len(ref)):
                kv = []
                for which in (0, 1):
                    rows = []
                    for i, j in enumerate(jobs):
                        past = j.state.past[layer][which] if past_len[i] else None
                        if past_len[i] < p:
                            pad = ref[layer][which].new_zeros(ref[layer][which].shape[0], p - past_len[i],
                                                              ref[layer][which].shape[2])
                            past = pad if past is None else torch.cat([pad, past], 1)
                        rows.append(past)
                    kv.append(torch.stack(rows))
                cache.update(kv[0], kv[1], layer)
        out = lm.model(inputs_embeds=embeds, attention_mask=attention, position_ids=positions,
                       cache=cache, use_cache=True)
        last = out.last_hidden_state[torch.arange(b, device=device), torch.tensor(new_len, device=device) - 1]
        logits = lm.lm_head(last).float()
        for i, j in enumerate(jobs):
            lo, hi = p - past_len[i], p + new_len[i]
            j.state.past = [(layer.keys[i, :, lo:hi].clone(), layer.values[i, :, lo:hi].clone())
                            for layer in cache.layers]
        return logits

    def _answer(self, jobs: list[_Job], logits: torch.Tensor) -> None:
        """Greedy choice among the answer words (as generate's prefix constraint does), then the
        state goes back to the cache."""
        allowed = answer_ids(logits.device)
        masked = torch.full_like(logits, float("-inf"))
        masked[:, allowed] = logits[:, allowed]
        chosen = masked.argmax(-1).tolist()
        for i, j in enumerate(jobs):
            t = j.turn
            t.logits = logits[i]
            t.answer = self.tokenizer.decode([chosen[i]], skip_special_tokens=True).strip()
            if t.pieces is not None and t.answer:
                t.pieces.put(t.answer)
            t.reused, t.computed = len(j.state.ids), len(j.suffix)
            j.state.ids = j.ids
            j.state.rounds += sum(1 for x in j.suffix if x == self.user_id)
            if self.cache.max_bytes:
                self.cache.put(j.state)
