"""Bring your own LLM: a local Hugging Face chat model answers questions about a result by calling
the result functions as OpenAI-style ``tools`` (``mm dialogue chat --study DIR --model PATH``).

    llm = ChatLLM.load("path/to/qwen-or-llama-chat")      # AutoModelForCausalLM + its tokenizer
    chat = ToolSession(load_context("runs/medical/s1"), llm)
    answer = chat.ask("how big is the lesion?")           # Answer: the model's text; the tools it ran

Each turn: the conversation so far, the question and :func:`.tools.tool_specs` of the result's kind
go through the tokenizer's chat template (``tools=...``; a template that does not render tools is
refused when the model is loaded); the model generates; tool calls in its output are parsed
(the tokenizer's own ``response_template`` when it has one, else the common spellings:
``<tool_call>{...}</tool_call>`` (Hermes, Qwen), ``[TOOL_CALLS] [...]`` (Mistral), a bare
``{"name": ..., "arguments"|"parameters": ...}`` object (Llama 3.1)), executed against the result
(:func:`.tools.call_tool`) and fed back as ``tool`` messages; the loop ends when the model answers
without a tool call or after ``max_steps`` rounds of calls.  A call that cannot be read, names an
unknown function or has bad arguments is not an exception: the model gets the error as the tool's
result (so it can correct itself) and the turn records it (``extra["errors"]``).

Our own trained parser stays the default; this path needs a model that was trained for tool use to
give good answers (the tests use a tiny random model: mechanics only).
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path

from .program import Answer, Program
from .tools import ToolError, call_tool, program_of, tool_specs

MAX_STEPS = 4
MAX_NEW_TOKENS = 256
SYSTEM = ("You answer questions about one analysis result ({kind}: {name}). Answer only from what the tools "
          "return; call a tool whenever the question needs a number or a picture from the result, and say so "
          "when the tools cannot answer.")
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_MISTRAL = re.compile(r"\[TOOL_CALLS\]\s*(.*)", re.S)


class LLMError(ValueError):
    """A model folder that cannot serve as a tool-calling chat model (the message says why)."""


class ChatLLM:
    """A causal LM and its tokenizer; ``generate(messages, tools)`` -> the new text (greedy)."""

    def __init__(self, model, tokenizer, name: str, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_new_tokens = max_new_tokens
        self.lock = threading.Lock()          # one generation at a time (the server's threads share it)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", max_new_tokens: int = MAX_NEW_TOKENS) -> ChatLLM:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").exists():
            raise LLMError(f"{path}: no config.json (a local Hugging Face model folder is expected)")
        try:
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(device).eval()
        except Exception as exc:  # noqa: BLE001 - any loading failure: one line naming the folder
            raise LLMError(f"{path}: cannot be loaded as a causal LM with its tokenizer "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        llm = cls(model, tok, path.name, max_new_tokens)
        llm.check_template()
        return llm

    def check_template(self) -> None:
        """Refuse a tokenizer whose chat template cannot render ``tools`` (the model could not see them)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise LLMError(f"{self.name}: the tokenizer has no chat template")
        probe = {"type": "function", "function": {"name": "probe_tool_x7", "description": "probe",
                                                  "parameters": {"type": "object", "properties": {}}}}
        try:
            text = self.render([{"role": "user", "content": "hi"}], [probe])
        except Exception as exc:  # noqa: BLE001 - a template error: say which model, not a jinja traceback
            raise LLMError(f"{self.name}: the chat template fails with tools ({type(exc).__name__}: {exc})") from None
        if "probe_tool_x7" not in text:
            raise LLMError(f"{self.name}: the chat template does not render tools (it needs a `tools` section)")

    def render(self, messages: list[dict], tools: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)

    def generate(self, messages: list[dict], tools: list[dict]) -> tuple[str, str]:
        """(raw new text with special tokens, the prompt) for ``messages`` with ``tools`` offered."""
        import torch

        prompt = self.render(messages, tools)
        with self.lock:
            ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
            with torch.inference_mode():
                out = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        new = out[0, ids["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=False), prompt


# ----------------------------------------------------------------------------- tool-call parsing
def _calls_from(obj) -> list[dict]:
    objs = obj if isinstance(obj, list) else [obj]
    out = []
    for o in objs:
        if not isinstance(o, dict):
            raise ToolError(f"a tool call must be a JSON object, got {type(o).__name__}")
        if isinstance(o.get("function"), dict):          # OpenAI shape {"type": "function", "function": {...}}
            o = o["function"]
        name = o.get("name")
        if not isinstance(name, str) or not name:
            raise ToolError("a tool call has no 'name'")
        args = o.get("arguments", o.get("parameters", {}))
        out.append({"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)})
    return out


def parse_tool_calls(text: str, tokenizer=None, prompt: str | None = None) -> tuple[str, list[dict], list[str]]:
    """A model's output -> (content without the calls, calls [{name, arguments (JSON text)}], errors).

    ``errors`` holds one line per call that could not be read (bad JSON, no name)."""
    if tokenizer is not None and getattr(tokenizer, "response_template", None):
        try:
            msg = tokenizer.parse_response(text, prefix=prompt)
            calls = _calls_from(msg.get("tool_calls") or [])
            return str(msg.get("content") or "").strip(), calls, []
        except Exception:  # noqa: BLE001 - fall back to the common spellings below
            pass
    specials = set(getattr(tokenizer, "all_special_tokens", []) or []) if tokenizer is not None else set()
    calls, errors, content = [], [], text
    blocks = _TAGGED.findall(text)
    if blocks:
        content = _TAGGED.sub("", text)
    else:
        m = _MISTRAL.search(text)
        if m:
            blocks, content = [m.group(1)], text[:m.start()]
        else:
            stripped = text.strip()
            for s in specials:
                stripped = stripped.replace(s, "")
            stripped = stripped.strip()
            if stripped.startswith("{") and ('"name"' in stripped):
                blocks, content = [stripped], ""
    for block in blocks:
        for s in specials:
            block = block.replace(s, "")
        try:
            obj, _ = json.JSONDecoder().raw_decode(block.strip())
            calls += _calls_from(obj)
        except json.JSONDecodeError as exc:
            errors.append(f"the tool call {block.strip()[:80]!r} is not valid JSON ({exc.msg} at character {exc.pos})")
        except ToolError as exc:
            errors.append(str(exc))
    for s in specials:
        content = content.replace(s, "")
    return content.strip(), calls, errors


# ----------------------------------------------------------------------------- the conversation
class ToolSession:
    """A conversation about one result answered by a chat model through tool calls (the same
    interface as :class:`.session.ResultSession`: ``ask``, ``replay``, ``ctx``)."""

    def __init__(self, ctx, llm: ChatLLM, max_steps: int = MAX_STEPS) -> None:
        self.ctx, self.llm, self.max_steps = ctx, llm, max_steps
        self.tools = tool_specs(ctx.kind)
        self.messages: list[dict] = [{"role": "system", "content": SYSTEM.format(kind=ctx.kind, name=ctx.name)}]
        self.history: list[dict] = []

    def replay(self, turns: list[tuple[str, str]]) -> None:
        for question, answer in turns:
            self.messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    def ask(self, question: str, client_tools: list[dict] | None = None) -> Answer:
        """One turn.  ``client_tools``: tools a server client offered (OpenAI ``tools``): offered
        to the model too, and a call to one of them ends the turn unexecuted
        (``extra["client_tool_calls"]``) for the client to run."""
        client_names = {t["function"]["name"] for t in client_tools or []}
        offered = [t for t in self.tools if t["function"]["name"] not in client_names] + list(client_tools or [])
        messages = [*self.messages, {"role": "user", "content": question}]
        ran: list[tuple[dict, Answer]] = []
        errors: list[str] = []
        text, stopped = "", False
        for step in range(self.max_steps + 1):
            raw, prompt = self.llm.generate(messages, offered)
            content, calls, bad = parse_tool_calls(raw, self.llm.tokenizer, prompt)
            if not calls and not bad:
                text = content
                break
            if step == self.max_steps:
                stopped = True
                break
            for call in calls:
                call["id"] = "call_" + uuid.uuid4().hex[:12]
            if any(c["name"] in client_names for c in calls):     # the client runs its own tools
                return self._client_calls(question, content, [c for c in calls if c["name"] in client_names])
            # arguments as an object: chat templates render them with `| tojson`
            messages.append({"role": "assistant", "content": content or None,
                             "tool_calls": [{"id": c["id"], "type": "function",
                                             "function": {"name": c["name"], "arguments": _as_object(c["arguments"])}}
                                            for c in calls]})
            for call in calls:
                try:
                    answer = call_tool(self.ctx, call["name"], call["arguments"])
                    ran.append((call, answer))
                    result = {"text": answer.text, "value": _jsonable(answer.value), "unit": answer.unit,
                              "abstained": answer.abstained}
                    if answer.image_png is not None:
                        result["image"] = answer.image_caption or "a picture (shown to the user)"
                except ToolError as exc:
                    errors.append(str(exc))
                    result = {"error": str(exc)}
                messages.append({"role": "tool", "tool_call_id": call["id"], "name": call["name"],
                                 "content": json.dumps(result)})
            for err in bad:
                errors.append(err)
                messages.append({"role": "tool", "name": "error", "content": json.dumps({"error": err})})
        last = ran[-1][1] if ran else None
        if stopped:
            text = (f"The model did not answer within {self.max_steps} rounds of tool calls."
                    + (f" The last tool said: {last.text}" if last is not None else ""))
        elif not text:
            text = last.text if last is not None else "The model gave no answer."
        program = last.program if last is not None else Program("abstain")
        answer = Answer(text, program, value=last.value if last else None, unit=last.unit if last else None,
                        image_png=next((a.image_png for _, a in reversed(ran) if a.image_png is not None), None),
                        image_caption=next((a.image_caption for _, a in reversed(ran) if a.image_png is not None), None),
                        abstained=last is None or last.abstained)
        answer.extra.update({"intent": "llm", "confidence": None, "linked": None, "errors": errors,
                             "programs": [str(a.program) for _, a in ran], "steps": step + 1,
                             "tool_calls": [{"name": c["name"], "arguments": c["arguments"]} for c, _ in ran]})
        self.messages += [{"role": "user", "content": question}, {"role": "assistant", "content": text}]
        self.history.append({"question": question, "program": "; ".join(answer.extra["programs"]), "answer": text})
        return answer

    def _client_calls(self, question: str, content: str, calls: list[dict]) -> Answer:
        answer = Answer(content, Program("abstain"))
        answer.extra.update({"intent": "llm", "client_tool_calls": calls, "programs": [], "errors": []})
        return answer


def _as_object(arguments: str):
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def program_for_tool(name: str, arguments: str) -> Program | None:
    """The program a tool call names, or None when it is not one of the result functions."""
    try:
        return program_of(name, arguments)
    except ToolError:
        return None
