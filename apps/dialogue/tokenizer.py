"""A small word-level tokenizer and the chat template of the embedded model.

The prompt of a conversation with ``n`` finished rounds and a new question reads::

    USER: what colour is the large circle ? <image> ASSISTANT: red </s> USER: what size is it ? <image> ASSISTANT:

(layout "per_turn"; layout "first" puts one ``<image>`` before the first question, as LLaVA does).
``<image>`` is expanded by the processor into ``num_image_tokens`` copies, one per object slot.
The tokenizer is a transformers ``PreTrainedTokenizerFast`` (WordLevel, lower-casing, splitting
words from punctuation) so it saves, loads and applies its chat template like any HF tokenizer.
"""
from __future__ import annotations

import re

from .questions import ANSWERS, PLURAL, paraphrase_words, template_words
from .scenes import PALETTE, SHAPES, SIZES

PAD, UNK, BOS, EOS, IMAGE, USER, ASSISTANT = "<pad>", "<unk>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:"
SPECIALS = (PAD, UNK, BOS, EOS, IMAGE, USER, ASSISTANT)
_WORDS = """what which is are there a an the of to from as on in it that one earlier object objects colour color
shape size how many other have same closest furthest nearest left right above below top bottom
? , . and or any do does""".split()

# Layout "per_turn" (the default): the image tokens follow every question, so they can attend to
# it (causal attention) and become question-aware object tokens, as FiLM/MAC condition vision on
# the question; layout "first": LLaVA's single image before the first question.
CHAT_TEMPLATES = {
    "per_turn": (
        "{% set ns = namespace(img=false) %}{% for m in messages %}{% if m['content'] is not string %}"
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}{% set ns.img = true %}{% endif %}{% endfor %}"
        "{% endif %}{% endfor %}"
        "{% for m in messages %}"
        "{% if m['content'] is string %}{% set text = m['content'] %}"
        "{% else %}{% set text = m['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') %}{% endif %}"
        "{% if m['role'] == 'user' %}USER: {{ text }} {% if ns.img %}<image> {% endif %}"
        "{% elif m['role'] == 'assistant' %}ASSISTANT: {{ text }} </s> {% endif %}"
        "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    ),
    "first": (
        "{% for m in messages %}"
        "{% if m['content'] is string %}{% set text = m['content'] %}{% set has_image = false %}"
        "{% else %}{% set text = m['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') %}"
        "{% set has_image = m['content'] | selectattr('type', 'equalto', 'image') | list | length > 0 %}{% endif %}"
        "{% if m['role'] == 'user' %}{% if has_image %}<image> {% endif %}USER: {{ text }} "
        "{% elif m['role'] == 'assistant' %}ASSISTANT: {{ text }} </s> {% endif %}"
        "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    ),
}
CHAT_TEMPLATE = CHAT_TEMPLATES["per_turn"]


def vocabulary() -> list[str]:
    """Every token id's word. New words are only ever appended (the phrasing layer's, last), so the
    ids of older words, and the rows of a saved model's embeddings, stay where they were."""
    words = list(SPECIALS) + _WORDS + list(ANSWERS) + list(PALETTE) + list(SHAPES) + list(PLURAL.values()) + list(SIZES)
    words += template_words() + paraphrase_words()
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)


def build_prompt(history: list[tuple[str, str]], question: str, image: bool = True, layout: str = "per_turn") -> str:
    """The same string the chat template of ``layout`` renders for ``history`` + ``question``."""
    after = "<image> " if image and layout == "per_turn" else ""
    parts = ["<image> "] if image and layout == "first" else []
    for q, a in history:
        parts.append(f"USER: {q} {after}ASSISTANT: {a} </s> ")
    parts.append(f"USER: {question} {after}ASSISTANT:")
    return "".join(parts)


def make_tokenizer(layout: str = "per_turn"):
    """A fresh ``PreTrainedTokenizerFast`` over :func:`vocabulary` with the chat template set."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    core = Tokenizer(WordLevel(vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, unk_token=UNK, bos_token=BOS,
                                  eos_token=EOS, additional_special_tokens=[IMAGE, USER, ASSISTANT])
    tok.chat_template = CHAT_TEMPLATES[layout]
    return tok


_WORD = re.compile(r"\w+|[^\w\s]+")


def words(text: str) -> list[str]:
    """The tokenizer's words: special tokens kept whole, else lower-cased and split into runs of
    letters/digits and runs of punctuation ("What color is it?" -> what, color, is, it, ?)."""
    out: list[str] = []
    for piece in text.split():
        out += [piece] if piece in SPECIALS else _WORD.findall(piece.lower())
    return out


class FastEncoder:
    """Word -> id without the HF machinery, for generated text (it must agree with the tokenizer)."""

    def __init__(self) -> None:
        self.vocab = {w: i for i, w in enumerate(vocabulary())}
        self.unk = self.vocab[UNK]

    def __call__(self, text: str) -> list[int]:
        return [self.vocab.get(w, self.unk) for w in words(text)]
