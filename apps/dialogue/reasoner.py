"""Question-aware object reasoner: the object tokens of one round, re-encoded with its question.

An instruction-aware visual encoder (as InstructBLIP's Q-Former reads the instruction): a small
bidirectional transformer over ``[none] + objects + question words`` so that every object token
can compare itself with the question ("red", "circle") and with the other objects ("closest to",
"left of") before the causal language model reads it.  Coreference goes through a *mention
memory*: each object carries an embedding of how many rounds ago the dialogue last put it in focus
(0 = never), so "it" (1 round ago) and "the earlier circle" (the most recent circle, at any
distance) are one attention step away, whatever the distance.  The ``pointer`` scores which object
this round puts in focus (or ``none``); its argmax becomes the next rounds' mention memory.

==================  ==============  ==================================================
tensor              shape           meaning
==================  ==============  ==================================================
``objects``         ``[G, K, D]``   object tokens of G image groups (one per round)
``object_mask``     ``[G, K]``      real objects (empty slots are never attended to)
``words``           ``[G, L, D]``   embeddings of the question each group follows
``word_mask``       ``[G, L]``      real words
``recency``         ``[G, K]``      rounds since each object was last in focus (0 never)
``match``           ``[G, K, 3]``   optional: question words naming each object's colour /
                                    shape / size (:func:`word_match`)
``xy``              ``[G, K, 2]``   optional (relate): object centres
-> ``tokens``       ``[G, K, D]``   objects + reasoner output
-> ``pointer``      ``[G, K + 1]``  focus logits over objects, last column = none
-> ``summary``      ``[G, D]``      the round's answer evidence, added to its ``ASSISTANT:``
-> ``anchor``       ``[G, K + 1]``  relate only: referent logits (the object the question
                                    names), last column = none
-> ``relation``     ``[G]``         handoff only: logit that the question asks about an
                                    object related to the referent (see below)
==================  ==============  ==================================================

``summary = W_n h_none + sum_k softmax(pointer)_k W_f h_k + W_c sum_k mask_k h_k / K``: the
reasoner's own read-out (none token), the object in focus, and a sum-pooled view that counts
(softmax attention averages, so it cannot count on its own).  Put on the token that predicts the
answer, it gives the language model the evidence one step away, as a Q-Former's query outputs do.
With ``relate`` the summary also gets a read-out of the other objects measured from the referent
(:meth:`ObjectReasoner._relate`): the closest / furthest one and how many are left of it.

``handoff``: in "what colour is the object closest to the red circle ?" the round's focus (what
"it" means next) is the closest object, two hops from the words. The pointer then stops being a
single head: ``p_focus = (1 - lam) softmax(pointer) + lam [pick, 0]`` where ``pick`` is the relate
selection measured from the referent and ``lam = sigmoid(relation)`` says from the question whether
it asks about a related object (trained on "focus != referent"). ``pointer`` is returned as
``log p_focus``, so the focus loss, the read-out and the mention memory all use the hand-off.
``tally`` adds ``count_bins(sum_k sigmoid(t . h_k))``: "how many red objects" as a sum of per-object
yes/no rather than a mean the language model has to scale back up.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

USER_TOKEN = "USER:"


class ReasonerOutput(NamedTuple):
    tokens: torch.Tensor                 # [G, K, D]
    pointer: torch.Tensor                # [G, K+1] focus logits (log-probabilities with handoff)
    summary: torch.Tensor                # [G, D]
    anchor: torch.Tensor | None          # [G, K+1] referent logits (relate)
    relation: torch.Tensor | None        # [G] "asks about a related object" logit (handoff)
    counts: torch.Tensor | None = None   # [G, 2] soft counts: tally (objects), relate gate (related objects)


class ObjectReasoner(nn.Module):
    def __init__(self, dim: int, layers: int = 3, heads: int = 4, max_distance: int = 12,
                 grounding: bool = False, relate: bool = False, relate_gate: bool = False,
                 handoff: bool = False, tally: bool = False) -> None:
        super().__init__()
        if handoff and not relate:
            raise ValueError("handoff needs relate (it hands the focus to the relate selection)")
        self.max_distance = max_distance
        # grounding: per object, does the question say its colour / shape / size word (see word_match)
        self.match = nn.Linear(3, dim, bias=False) if grounding else None
        # relate: a read-out of the other objects relative to the question's referent (see _relate)
        self.relate = (nn.Sequential(nn.Linear(dim + 5, dim), nn.GELU(), nn.Linear(dim, dim))
                       if relate else None)
        if relate:
            self.anchor = nn.Linear(dim, 1)                        # referent pointer, trained like `pointer`
            self.relate_score = nn.Linear(dim, 1)
            # from the question (the none token's state): weights of (dx, dy, |d|, |d|^2) in the
            # selection score and in the "does this object satisfy the relation" gate
            self.select_geometry, self.gate_geometry = nn.Linear(dim, 4), nn.Linear(dim, 5)
            self.geometry_gain = nn.Parameter(torch.tensor(10.0))
            self.read_related, self.read_tally = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.read_relcount = nn.Linear(COUNT_BINS, dim)
            # relate_gate: the question decides how much of the read-out reaches the answer; without it
            # "what colour is the red circle ?" also hears the colour of the object closest to it
            self.relate_gate = nn.Linear(dim, 1) if relate_gate else None
        # handoff: is the question about an object related to the referent (focus = relate selection)?
        self.handoff = nn.Linear(dim, 1) if handoff else None
        # tally: per-object "does it count" gate, summed into soft count bins
        self.tally = nn.Linear(dim, 1) if tally else None
        self.read_objcount = nn.Linear(COUNT_BINS, dim) if tally else None
        self.kind = nn.Embedding(3, dim)                       # none / object / word
        self.recency = nn.Embedding(max_distance + 1, dim)     # 0 = never in focus
        # a scalar view of recency too, so "the most recent circle" is a monotone comparison
        self.recency_scalar = nn.Linear(1, dim, bias=False)
        self.none = nn.Parameter(torch.zeros(dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        self.pointer = nn.Linear(dim, 1)
        self.read_none, self.read_focus, self.read_count = (nn.Linear(dim, dim) for _ in range(3))
        self.zero_extras()

    def zero_extras(self) -> None:
        """Start grounding and the relate read-out at zero: a new model begins as the plain reasoner and
        learns how much to use them (the owning PreTrainedModel calls this again after ``post_init``)."""
        extras = (self.read_related, self.read_tally, self.read_relcount) if self.relate is not None else ()
        for layer in (self.match, self.read_objcount, *extras):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        if self.tally is not None and self.relate is not None:
            # the counts are supervised (train.count_loss): a random gate starts saturated, with no gradient
            nn.init.zeros_(self.gate_geometry.weight)
            nn.init.zeros_(self.gate_geometry.bias)
        if self.handoff is not None:         # start as the plain pointer (lam ~ 0.05)
            nn.init.zeros_(self.handoff.weight)
            nn.init.constant_(self.handoff.bias, -3.0)

    def forward(self, objects: torch.Tensor, object_mask: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                recency: torch.Tensor, match: torch.Tensor | None = None,
                xy: torch.Tensor | None = None) -> ReasonerOutput:
        """See the module table."""
        g, k, _ = objects.shape
        rec = recency.clamp(0, self.max_distance)
        seen = (rec > 0).to(objects.dtype)[..., None]
        obj = (objects + self.kind.weight[1] + self.recency(rec)
               + seen * self.recency_scalar(rec[..., None].to(objects.dtype) / self.max_distance))
        if self.match is not None and match is not None:
            obj = obj + self.match(match.to(obj.dtype))
        none = (self.none + self.kind.weight[0]).expand(g, 1, -1)
        x = torch.cat([none, obj, words + self.kind.weight[2]], dim=1)
        valid = torch.cat([torch.ones(g, 1, dtype=torch.bool, device=objects.device), object_mask, word_mask], dim=1)
        h = self.norm(self.encoder(x, src_key_padding_mask=~valid))
        pointer = self._point(self.pointer, h, object_mask)
        h_obj = h[:, 1: k + 1]
        real = object_mask[..., None].to(h.dtype)
        anchor = relation = related = None
        nan = objects.new_full((g,), float("nan"))
        object_count = relation_count = nan
        if self.relate is not None and xy is not None:
            anchor = self._point(self.anchor, h, object_mask)
            referent = anchor[:, :k].float().softmax(-1).to(h.dtype).nan_to_num(0.0)
            related, pick, relation_count = self._relate(h[:, 0], h_obj, object_mask, referent, xy.to(h.dtype))
            if self.relate_gate is not None:
                related = torch.sigmoid(self.relate_gate(h[:, 0])) * related
            if self.handoff is not None:
                relation = self.handoff(h[:, 0]).squeeze(-1)
                pointer = self._hand_off(pointer, pick, relation, object_mask)
        focus = pointer[:, :k].float().softmax(-1).to(h.dtype).nan_to_num(0.0)
        summary = (self.read_none(h[:, 0]) + self.read_focus(torch.einsum("gk,gkd->gd", focus, h_obj))
                   + self.read_count((h_obj * real).sum(1) / k))
        if related is not None:
            summary = summary + related
        if self.tally is not None:
            object_count = (torch.sigmoid(self.tally(h_obj)) * real).sum((1, 2))
            summary = summary + self.read_objcount(count_bins(object_count))
        counts = torch.stack([object_count.to(nan.dtype), relation_count.to(nan.dtype)], dim=1)
        return ReasonerOutput(objects + self.out(h_obj), pointer, summary, anchor, relation, counts)

    @staticmethod
    def _hand_off(pointer: torch.Tensor, pick: torch.Tensor, relation: torch.Tensor,
                  object_mask: torch.Tensor) -> torch.Tensor:
        """``log((1 - lam) softmax(pointer) + lam [pick, 0])`` with ``lam = sigmoid(relation)``: ``[G, K+1]``."""
        lam = torch.sigmoid(relation.float())[:, None]
        mixed = (1 - lam) * pointer.float().softmax(-1) + lam * torch.cat([pick, pick.new_zeros(len(pick), 1)], 1)
        return mixed.clamp_min(1e-12).log().masked_fill(~_with_none(object_mask),
                                                        torch.finfo(torch.float32).min).to(pointer.dtype)

    @staticmethod
    def _point(head: nn.Linear, h: torch.Tensor, object_mask: torch.Tensor) -> torch.Tensor:
        """``[G, K+1]`` logits over the objects then "none" (empty slots masked)."""
        k = object_mask.shape[1]
        logits = head(h[:, : k + 1]).squeeze(-1)
        logits = torch.cat([logits[:, 1:], logits[:, :1]], dim=1)
        return logits.masked_fill(~_with_none(object_mask), torch.finfo(logits.dtype).min)

    def _relate(self, question: torch.Tensor, h_obj: torch.Tensor, object_mask: torch.Tensor,
                referent: torch.Tensor, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[G, D]``: what the other objects say relative to the question's referent, the
        selection ``pick [G, K]`` and the gate's count ``[G]``.

        ``referent`` ``[G, K]`` is the anchor pointer's distribution (trained on the object the
        question names: "the red object" in "closest to the red object"). Each object's offset to
        it, ``g_k = (dx, dy, |d|, |d|^2)``, enters three ways: ``r_k = MLP([h_k, g_k, referent_k])``;
        a selection ``softmax_k(gain * a(q) . g_k + score(r_k))`` whose weights ``a(q)`` come from
        the question ("closest": -|d|, "furthest": +|d|, an argmin that attention over absolute
        coordinates learns slowly); and a gate ``sigmoid(gain * b(q) . [g_k, 1])`` ("left of it":
        -dx) summed into a count, embedded by soft bins. The referent itself is left out of both.
        """
        centre = torch.einsum("gk,gkc->gc", referent, xy)
        delta = xy - centre[:, None]
        geo = torch.cat([delta, delta.norm(dim=-1, keepdim=True), (delta ** 2).sum(-1, keepdim=True)], dim=-1)
        r = self.relate(torch.cat([h_obj, geo, referent[..., None]], dim=-1))
        pick, gate = self.relation_weights(question, geo, referent, object_mask, self.relate_score(r).squeeze(-1))
        related = torch.einsum("gk,gkd->gd", pick.to(r.dtype), r)
        count = (gate * object_mask.to(gate.dtype) * (1 - referent)).sum(1)
        tally = (r * object_mask[..., None].to(r.dtype)).sum(1) / r.shape[1]
        return self.read_related(related) + self.read_tally(tally) + self.read_relcount(count_bins(count)), pick, count

    def relation_weights(self, question: torch.Tensor, geo: torch.Tensor, referent: torch.Tensor,
                         object_mask: torch.Tensor, content: torch.Tensor | float = 0.0):
        """``pick [G, K]`` (softmax selection, the referent and empty slots excluded) and
        ``gate [G, K]`` (does each object satisfy the relation) from the question and the offsets."""
        gain = self.geometry_gain
        score = (gain * torch.einsum("gc,gkc->gk", self.select_geometry(question), geo) + content
                 - 30.0 * referent).float()
        pick = score.masked_fill(~object_mask, torch.finfo(torch.float32).min).softmax(-1).nan_to_num(0.0)
        gate_w = self.gate_geometry(question)
        gate = torch.sigmoid(gain * (torch.einsum("gc,gkc->gk", gate_w[:, :4], geo) + gate_w[:, 4:]))
        return pick, gate


def _with_none(object_mask: torch.Tensor) -> torch.Tensor:
    """``[G, K] -> [G, K+1]``: the columns a pointer may choose (real objects, then "none")."""
    return torch.cat([object_mask, torch.ones_like(object_mask[:, :1])], dim=1)


COUNT_BINS = 9   # 0..8 objects


def count_bins(count: torch.Tensor) -> torch.Tensor:
    """``[G] -> [G, COUNT_BINS]`` triangular soft one-hot of a (soft) count, so 2.0 and 3.0 are
    different directions rather than two lengths of one vector (which a LayerNorm would erase)."""
    centres = torch.arange(COUNT_BINS, device=count.device, dtype=count.dtype)
    return (1 - (count[:, None] - centres).abs()).clamp(min=0)


def word_match(slot_words: torch.Tensor, word_ids: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """``[G, K, 3]``: for each object, the (expected) number of times the question names its colour,
    its shape and its size.

    ``slot_words`` ``[G, K, 3, V]`` holds, per object and attribute, a distribution over the vocabulary
    (the palette colour one-hot; the attribute head's shape and size probabilities); ``word_ids``
    ``[G, L]`` the question's words. Grounding "the large red circle" is then a lookup instead of a
    learned match between two embeddings.
    """
    bag = torch.zeros(word_ids.shape[0], slot_words.shape[-1], dtype=slot_words.dtype, device=word_ids.device)
    bag.scatter_add_(1, word_ids, word_mask.to(slot_words.dtype))
    return torch.einsum("gkav,gv->gka", slot_words, bag)


def recency_from_mentions(mentions: torch.Tensor, group_row: torch.Tensor, group_round: torch.Tensor,
                          slots: int) -> torch.Tensor:
    """``[G, K]`` rounds since each slot was last in focus before its group's round (0 = never).

    ``mentions[n, r]`` is the slot round ``r`` of row ``n`` put in focus (-1 = none).
    """
    rec = torch.zeros(len(group_row), slots, dtype=torch.long, device=mentions.device)
    for r in range(mentions.shape[1]):                      # ascending: the latest mention wins
        m = mentions[group_row, r]
        ok = (m >= 0) & (m < slots) & (group_round > r)
        rec[ok.nonzero(as_tuple=True)[0], m[ok]] = (group_round - r)[ok]
    return rec


def question_words(input_ids: torch.Tensor, embeds: torch.Tensor, is_image: torch.Tensor, slots: int,
                   vocab: list[str], pad_id: int):
    """Per image group: its row, its round and the embeddings of the question it follows.

    Rounds are counted by ``USER:`` tokens; a question is the tokens after ``USER:`` and before that
    round's ``ASSISTANT:`` (never the answer). An image group before any question (layout "first")
    has round -1 and no words.  Returns ``group_row [G]``, ``group_round [G]``, ``words [G, L, D]``,
    ``word_mask [G, L]``, the ``[N, S]`` (row, segment) -> group table and ``word_ids [G, L]``.
    """
    from .tokenizer import ASSISTANT, USER

    n = input_ids.shape[0]
    user = input_ids == vocab.index(USER)
    segment = user.long().cumsum(1)
    asked = (input_ids == vocab.index(ASSISTANT)).long().cumsum(1) == segment - 1
    is_word = asked & ~is_image & ~user & (input_ids != pad_id)
    rows = torch.arange(n, device=input_ids.device)[:, None].expand_as(segment)
    group_row = rows[is_image].view(-1, slots)[:, 0]
    group_segment = segment[is_image].view(-1, slots)[:, 0]
    g = len(group_row)
    table = torch.full((n, int(segment.max()) + 1), -1, dtype=torch.long, device=input_ids.device)
    table[group_row, group_segment] = torch.arange(g, device=input_ids.device)
    owner = table[rows[is_word], segment[is_word]]                 # group of each question word, in order
    keep = owner >= 0
    owner, vectors, ids = owner[keep], embeds[is_word][keep], input_ids[is_word][keep]
    d = embeds.shape[-1]
    if len(owner) == 0:
        return (group_row, group_segment - 1, embeds.new_zeros(g, 1, d),
                torch.zeros(g, 1, dtype=torch.bool, device=embeds.device), table,
                torch.full((g, 1), pad_id, dtype=torch.long, device=embeds.device))
    _, counts = torch.unique_consecutive(owner, return_counts=True)
    starts = (counts.cumsum(0) - counts).repeat_interleave(counts)
    rank = torch.arange(len(owner), device=owner.device) - starts
    words = embeds.new_zeros(g, int(counts.max()), d)
    word_mask = torch.zeros(g, int(counts.max()), dtype=torch.bool, device=embeds.device)
    words[owner, rank] = vectors
    word_mask[owner, rank] = True
    word_ids = torch.full((g, int(counts.max())), pad_id, dtype=torch.long, device=input_ids.device)
    word_ids[owner, rank] = ids
    return group_row, group_segment - 1, words, word_mask, table, word_ids


def reason(model, input_ids, embeds, is_image, feats, object_mask, image_index, groups, mention_slots=None):
    """The image tokens of every group ``[G, K, D]`` and ``[N, T, D]`` additions to the input embeddings
    (each round's summary on its ``ASSISTANT:``); fills ``model._aux`` with pointer logits and mentions.

    Without ``mention_slots`` the focus of round r is the reasoner's own pointer argmax at round r,
    computed round by round (each round's memory only needs the rounds before it).
    """
    from .tokenizer import vocabulary

    k = model.config.num_image_tokens
    group_row, group_round, words, word_mask, table, word_ids = question_words(
        input_ids, embeds, is_image, k, vocabulary(), model.config.pad_token_id)
    group_img = image_index.repeat_interleave(groups)
    objects, mask = feats[group_img].to(embeds.dtype), object_mask[group_img]
    extra = {}
    slot_words, xy = model._slots.get("words"), model._slots.get("xy")
    if slot_words is not None:
        extra["match"] = word_match(slot_words[group_img], word_ids, word_mask)
    if xy is not None:
        extra["xy"] = xy[group_img].to(embeds.dtype)
    rounds = max(1, int(group_round.max()) + 1)
    if mention_slots is None:
        mentions = torch.full((input_ids.shape[0], rounds), -1, dtype=torch.long, device=input_ids.device)
        for r in range(rounds):
            rec = recency_from_mentions(mentions, group_row, group_round, k)
            res = model.reasoner(objects, mask, words, word_mask, rec, **extra)
            now = group_round == r
            pick = res.pointer[now].argmax(-1)
            mentions[group_row[now], r] = torch.where(pick == k, torch.full_like(pick, -1), pick)
    else:
        mentions = mention_slots.long()
        if mentions.shape[1] < rounds:
            mentions = torch.cat([mentions, mentions.new_full((mentions.shape[0], rounds - mentions.shape[1]), -1)], 1)
        rec = recency_from_mentions(mentions, group_row, group_round, k)
        res = model.reasoner(objects, mask, words, word_mask, rec, **extra)
    tokens = torch.where(mask[..., None], res.tokens, model.empty_slot.to(res.tokens.dtype))
    summary = res.summary
    model._aux.update(pointer_logits=res.pointer, group_row=group_row, group_round=group_round, mentions=mentions,
                      anchor_logits=res.anchor, relation_logits=res.relation, counts=res.counts)
    from .tokenizer import ASSISTANT

    # ASSISTANT: of segment s closes the question whose image group sits in segment s
    is_asst = input_ids == vocabulary().index(ASSISTANT)
    segment = (input_ids == vocabulary().index(USER_TOKEN)).long().cumsum(1)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(segment)
    owner = table[rows[is_asst], segment[is_asst]]
    added = torch.zeros_like(embeds)
    hit = is_asst.clone()
    hit[is_asst] = owner >= 0
    added[hit] = summary[owner[owner >= 0]].to(embeds.dtype)
    return tokens, added
