"""Bring your own LLM (mechanics only): a tiny random Llama with a byte-level tokenizer and a chat
template that renders tools, built offline from a config.  The tools reach the prompt, a tool call in
the model's output is executed against the result and its result reaches the answer; bad calls and
endless calls end cleanly; the real tiny model runs end to end through the CLI and the server."""
from __future__ import annotations

import json
import re

import pytest
import torch
from fastapi.testclient import TestClient
from result_samples import medical

from apps.dialogue.results.context import load_context
from apps.dialogue.results.llm import ChatLLM, LLMError, ToolSession, parse_tool_calls
from apps.dialogue.results.tools import tool_specs

TEMPLATE = r"""{%- if tools %}<|im_start|>system
You may call these tools:
{% for t in tools %}{{ t | tojson }}
{% endfor %}To call one, write <tool_call>{"name": NAME, "arguments": {...}}</tool_call><|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == 'tool' %}<|im_start|>tool
<tool_response>{{ m.content }}</tool_response><|im_end|>
{% elif m.tool_calls %}<|im_start|>assistant
{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def build_tiny_chat_model(out, template: str | None = TEMPLATE):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<pad>",
                                  additional_special_tokens=["<|im_start|>", "<tool_call>", "</tool_call>"])
    tok.chat_template = template
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16384,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return load_context(medical(tmp_path_factory.mktemp("res") / "s1"))


def script(llm, replies, prompts):
    """Replace the model's generate by scripted replies; each reply sees the decoded prompt."""
    def generate(input_ids, **_):
        prompt = llm.tokenizer.decode(input_ids[0])
        prompts.append(prompt)
        text = replies.pop(0)
        text = text(prompt) if callable(text) else text
        new = llm.tokenizer(text + "<|im_end|>", add_special_tokens=False, return_tensors="pt")["input_ids"]
        return torch.cat([input_ids, new], dim=1)

    llm.model.generate = generate


def _from_tool_response(prompt: str) -> str:
    result = json.loads(re.findall(r"<tool_response>(.*?)</tool_response>", prompt)[-1])
    return f"The lesion measures {result['value']} {result['unit']}."


def test_tools_reach_the_prompt_and_a_tool_call_reaches_the_answer(tiny, ctx):
    llm = ChatLLM.load(tiny)
    prompts = []
    script(llm, ['<tool_call>{"name": "lesion_volume", "arguments": {}}</tool_call>', _from_tool_response], prompts)
    answer = ToolSession(ctx, llm).ask("how big is the lesion?")
    for spec in tool_specs("medical"):                      # every result function is offered as a tool
        assert json.dumps(spec) in prompts[0]
    assert "<tool_response>" in prompts[1] and '"value": 5.886' in prompts[1]
    assert answer.text == "The lesion measures 5.886 mL."
    assert answer.value == 5.886 and answer.unit == "mL" and str(answer.program) == "lesion.volume()"
    assert answer.extra["programs"] == ["lesion.volume()"] and answer.extra["errors"] == []


def test_bad_calls_are_fed_back_and_endless_calls_stop(tiny, ctx):
    llm = ChatLLM.load(tiny)
    prompts = []
    script(llm, ['<tool_call>{"name": "lesion_volume", "arguments": </tool_call>',
                 '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
                 '<tool_call>{"name": "lesion_volume", "arguments": {"modality": "pet"}}</tool_call>',
                 "I could not measure it."], prompts)
    answer = ToolSession(ctx, llm).ask("how big is the lesion?")
    assert answer.text == "I could not measure it." and answer.abstained
    errors = answer.extra["errors"]
    assert "not valid JSON" in errors[0] and "unknown tool 'rm_rf'" in errors[1] and "must be one of" in errors[2]
    assert "unknown tool 'rm_rf'" in prompts[2]                 # the model is told what went wrong
    script(llm, ['<tool_call>{"name": "diagnosis", "arguments": {}}</tool_call>'] * 3, prompts)
    capped = ToolSession(ctx, llm, max_steps=2).ask("what is it?")
    assert capped.text.startswith("The model did not answer within 2 rounds of tool calls.")
    assert capped.extra["programs"] == ["diagnosis()", "diagnosis()"]
    # the common spellings of a call
    assert parse_tool_calls('[TOOL_CALLS] [{"name": "top", "arguments": {"k": 3}}]')[1] == \
        [{"name": "top", "arguments": '{"k": 3}'}]
    assert parse_tool_calls('{"name": "counts", "parameters": {}}')[1] == [{"name": "counts", "arguments": "{}"}]
    assert parse_tool_calls("The lesion is 5.9 mL.") == ("The lesion is 5.9 mL.", [], [])


def test_unusable_model_folders_get_one_line_errors(tmp_path, tiny):
    with pytest.raises(LLMError, match="no config.json"):
        ChatLLM.load(tmp_path)
    no_tools = build_tiny_chat_model(tmp_path / "plain", "{% for m in messages %}{{ m.content }}{% endfor %}")
    with pytest.raises(LLMError, match="does not render tools"):
        ChatLLM.load(no_tools)


def test_the_real_tiny_model_runs_end_to_end(tiny, ctx, capsys, tmp_path):
    from mmcore.cli import main as mm

    llm = ChatLLM.load(tiny, max_new_tokens=24)
    answer = ToolSession(ctx, llm).ask("how big is the lesion?")       # random weights: any text, no exception
    assert isinstance(answer.text, str) and answer.extra["steps"] >= 1
    assert mm(["dialogue", "chat", "--study", str(ctx.folder), "--model", str(tiny), "-q", "how big is the lesion?",
               "--explain", "--max-tool-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "bot: " in out and "tool calls:" in out
    assert mm(["dialogue", "chat", "--study", str(ctx.folder), "--model", str(tmp_path), "-q", "hi"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert mm(["dialogue", "serve", "--results-model", str(tiny)]) == 2
    assert "--results-model needs --results-root" in capsys.readouterr().err
    assert mm(["dialogue", "serve", "--results-root", str(ctx.folder.parent), "--results-model", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


class _NoModel:
    name, needs_image = "mmcore-scene-vlm", True


def test_the_server_answers_through_the_chat_model(tiny, ctx):
    from apps.dialogue.server import create_app

    llm = ChatLLM.load(tiny)
    app = create_app(_NoModel(), ctx.folder.parent / "c.sqlite", results_root=ctx.folder.parent, results_llm=llm)
    c = TestClient(app)
    prompts = []
    script(llm, ['<tool_call>{"name": "lesion_volume", "arguments": {}}</tool_call>', _from_tool_response], prompts)
    body = {"messages": [{"role": "user", "content": "how big is the lesion?"}], "context": "s1"}
    out = c.post("/v1/chat/completions", json=body).json()
    assert out["choices"][0]["message"]["content"] == "The lesion measures 5.886 mL."
    assert out["program"] == "lesion.volume()" and out["result"]["tool_calls"][0]["name"] == "lesion_volume"
    # a client's own tool: offered to the model; its call goes back to the client unexecuted
    mine = {"type": "function", "function": {"name": "ask_radiologist", "parameters": {"type": "object"}}}
    script(llm, ['<tool_call>{"name": "ask_radiologist", "arguments": {"q": "size"}}</tool_call>'], prompts)
    out = c.post("/v1/chat/completions", json=body | {"tools": [mine]}).json()
    assert '"name": "ask_radiologist"' in prompts[-1] and '"name": "lesion_volume"' in prompts[-1]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "ask_radiologist",
                                                                        "arguments": '{"q": "size"}'}
    script(llm, ["It is small."], prompts)
    r = c.post("/v1/chat/completions", json=body | {"tools": [mine], "tool_choice": "required"})
    assert r.status_code == 422 and "did not call" in r.json()["error"]["message"]
