"""Client tools on result conversations (OpenAI ``tools`` / ``tool_choice``): shape checks (400),
what the parser-backed server calls, the tool-result round, streaming, and the real ``openai``
client round-tripping them against a live server."""
from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient
from result_samples import medical

from apps.dialogue.results.tools import tool_specs


class _NoModel:
    name, needs_image = "mmcore-scene-vlm", True


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    medical(root / "med" / "s1")
    return root


@pytest.fixture(scope="module")
def app(root):
    from apps.dialogue.results import session
    from apps.dialogue.server import create_app

    # the shipped n-gram parser (no sentence encoder to load): these tests are about tool mechanics
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(session, "minilm_available", lambda: False)
        app = create_app(_NoModel(), root / "c.sqlite", results_root=root)
        app.state.results.parser = session.default_parser()
    return app


def _ask(client, question, status=200, **extra):
    body = {"messages": [{"role": "user", "content": question}], "context": "med/s1", **extra}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    return r.json()


def test_tool_choice_decides_between_a_call_and_our_answer(app):
    c = TestClient(app)
    tools = tool_specs("medical")
    auto = _ask(c, "how big is the lesion?", tools=tools)
    msg = auto["choices"][0]
    assert msg["finish_reason"] == "tool_calls" and msg["message"]["content"] is None
    call = msg["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "lesion_volume", "arguments": "{}"} and auto["program"] == "lesion.volume()"
    # a function the client does not offer: our own answer
    other = _ask(c, "how big is the lesion?", tools=[t for t in tools if t["function"]["name"] != "lesion_volume"])
    assert other["choices"][0]["finish_reason"] == "stop" and other["result"]["value"] == 5.886
    assert _ask(c, "how big is the lesion?", tools=tools, tool_choice="none")["result"]["value"] == 5.886
    # a named function gets the parsed arguments it takes
    named = _ask(c, "how big is the lesion on the ct?", tools=tools,
                 tool_choice={"type": "function", "function": {"name": "lesion_image"}})
    assert named["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "lesion_image",
                                                                          "arguments": '{"modality": "ct"}'}
    err = _ask(c, "what is the weather?", 400, tools=tools, tool_choice="required")["error"]["message"]
    assert "tool_choice 'required'" in err
    mine = [{"type": "function", "function": {"name": "my_lookup", "parameters": {"type": "object"}}}]
    err = _ask(c, "how big is the lesion?", 400, tools=mine,
               tool_choice={"type": "function", "function": {"name": "my_lookup"}})["error"]["message"]
    assert "not one of the result functions" in err


def test_tool_results_come_back_as_the_answer_and_streaming_carries_calls(app):
    c = TestClient(app)
    tools = tool_specs("medical")
    first = _ask(c, "how big is the lesion?", tools=tools)
    call = first["choices"][0]["message"]["tool_calls"][0]
    back = {"conversation_id": first["conversation_id"], "tools": tools,
            "messages": [{"role": "assistant", "content": None, "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": call["id"], "content": "5.9 mL (client side)"}]}
    r = c.post("/v1/chat/completions", json=back)
    assert r.status_code == 400 and "no user question" in r.json()["error"]["message"]
    back["messages"].insert(0, {"role": "user", "content": "how big is the lesion?"})
    out = c.post("/v1/chat/completions", json=back).json()
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["message"]["content"] == "lesion_volume: 5.9 mL (client side)"
    history = app.state.results._db().execute("SELECT history FROM result_conversations WHERE id = ?",
                                              (first["conversation_id"],)).fetchone()[0]
    assert json.loads(history) == [["how big is the lesion?", "lesion_volume: 5.9 mL (client side)"]]
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "is the registration ok?"}],
                                             "context": "med/s1", "tools": tools, "stream": True})
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert events[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "registration_quality"
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("extra, words", [
    ({"tools": []}, "non-empty list"),
    ({"tools": {"type": "function"}}, "non-empty list"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0] must be"),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}, "parameters must be"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}] * 2}, "given twice"),
    ({"tool_choice": "auto"}, "only allowed when 'tools'"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "always"}, "'tool_choice' must be"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "not in 'tools'"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
])
def test_bad_tool_shapes_get_400(app, extra, words):
    c = TestClient(app)
    assert words in _ask(c, "how big is the lesion?", 400, **extra)["error"]["message"]
    # the same checks hold on the scene model's path, which calls no tools
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], **extra})
    assert r.status_code == 400 and words in r.json()["error"]["message"]


def test_scene_path_refuses_a_required_tool_and_tool_messages(app):
    c = TestClient(app)
    tools = [{"type": "function", "function": {"name": "f"}}]
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "tools": tools,
                                             "tool_choice": "required"})
    assert r.status_code == 400 and "only in result conversations" in r.json()["error"]["message"]
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "tool", "content": "x"}]})
    assert r.status_code == 400 and "tool messages belong" in r.json()["error"]["message"]


def test_the_openai_client_round_trips_tools(app):
    openai = pytest.importorskip("openai")
    import httpx
    import uvicorn

    from tests.apps.dialogue.conftest import free_port

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        tools = tool_specs("medical")
        messages = [{"role": "user", "content": "how big is the lesion?"}]
        first = client.chat.completions.create(model="m", messages=messages, tools=tools, tool_choice="auto",
                                               extra_body={"context": "med/s1"})
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        call = choice.message.tool_calls[0]
        assert call.function.name == "lesion_volume" and json.loads(call.function.arguments) == {}
        messages += [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "5.886 mL"}]
        final = client.chat.completions.create(model="m", messages=messages, tools=tools,
                                               extra_body={"context": "med/s1"})
        assert final.choices[0].finish_reason == "stop"
        assert final.choices[0].message.content == "lesion_volume: 5.886 mL"
        named = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "how big is the lesion on the ct?"}], tools=tools,
            tool_choice={"type": "function", "function": {"name": "lesion_image"}}, extra_body={"context": "med/s1"})
        assert named.choices[0].message.tool_calls[0].function.arguments == '{"modality": "ct"}'
        with pytest.raises(openai.BadRequestError, match="not in 'tools'"):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], tools=tools,
                                           tool_choice={"type": "function", "function": {"name": "nope"}},
                                           extra_body={"context": "med/s1"})
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "how big is it?"}],
                                                tools=tools, stream=True, extra_body={"context": "med/s1"})
        chunks = list(stream)
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        assert any(ch.choices[0].delta.tool_calls for ch in chunks)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
