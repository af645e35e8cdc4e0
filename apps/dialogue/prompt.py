"""What a turn's input may be, and the token ids of the embedded model's prompt.

Shared by the generating backend (:mod:`.session`) and the incremental engine (:mod:`.engine`)
so that both read exactly the same prompt, cut to the context the same way.
"""
from __future__ import annotations

from .tokenizer import IMAGE, build_prompt

MAX_QUESTION_CHARS = 500


class BadInput(ValueError):
    """The user's input cannot be answered (empty or too long question, missing image, ...)."""


def check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise BadInput("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise BadInput(f"the question has {len(question)} characters; at most {MAX_QUESTION_CHARS} are accepted")
    return question.strip()


def prompt_ids(tokenizer, config, max_new_tokens: int, history: list[tuple[str, str]], question: str) -> list[int]:
    """Token ids of the prompt for ``history`` + ``question``, ``<image>`` expanded to one token per
    object slot.  When the prompt would not leave ``max_new_tokens`` (+2) of the context, the oldest
    rounds are dropped, one at a time; a question too long on its own raises :class:`BadInput`."""
    k = config.num_image_tokens
    limit = config.text_config.max_position_embeddings - max_new_tokens - 2
    history = list(history)
    while True:
        prompt = build_prompt(history, question, layout=config.image_layout)
        prompt = prompt.replace(IMAGE, " ".join([IMAGE] * k))
        ids = tokenizer(prompt).input_ids
        if len(ids) <= limit or not history:
            break
        history.pop(0)
    if len(ids) > limit:
        raise BadInput(f"the question is too long for this model ({len(ids)} tokens, at most {limit})")
    return list(ids)


def question_lines(given: list[str] | None, banner: str):
    """The questions of a terminal chat: ``given`` (``-q``), else stdin lines to the end of input.
    Blank lines are skipped, except that at a terminal an empty line ends the chat (``banner`` is
    printed first there); piped input may hold blank lines between questions."""
    import sys

    interactive = given is None and sys.stdin.isatty()
    if interactive:
        print(banner)
    for line in (given or sys.stdin):
        line = line.strip()
        if line:
            yield line
        elif interactive:
            return
