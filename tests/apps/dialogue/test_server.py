"""The OpenAI-compatible server end to end on loopback, bad input, restart, and the web page."""
import base64
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from apps.dialogue.questions import ANSWERS
from apps.dialogue.scenes import make_scene, render


def _data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


QUESTIONS = ["is there a red circle ?", "how many objects are left of the earlier circle ?", "what size is it ?"]


def _ask(client, url, cid, question, image=None, stream=False):
    content = [{"type": "text", "text": question}]
    if image is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": image}})
    body = {"model": "mmcore-scene-vlm", "messages": [{"role": "user", "content": content}], "stream": stream}
    if cid:
        body["conversation_id"] = cid
    r = client.post(url + "/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    if not stream:
        data = r.json()
        return data["conversation_id"], data["choices"][0]["message"]["content"]
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    return chunks[0]["conversation_id"], "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip()


def test_three_turns_streamed_and_not_agree_and_survive_a_restart(live_server, backend):
    state, restart = live_server
    image = _data_url(render(make_scene(20_000_123, split="test")))
    from apps.dialogue.session import Session

    local = Session(backend, Image.open(io.BytesIO(base64.b64decode(image.split(",")[1]))).convert("RGB"))
    expected = [local.ask(q) for q in QUESTIONS]
    assert all(a in ANSWERS for a in expected), expected
    with httpx.Client(timeout=60) as client:
        url = state["url"]
        assert client.get(url + "/health").json()["status"] == "ok"
        assert client.get(url + "/v1/models").json()["data"][0]["id"] == "mmcore-scene-vlm"
        plain, streamed = [], []
        cid_a = cid_b = None
        for i, q in enumerate(QUESTIONS):
            cid_a, a = _ask(client, url, cid_a, q, image if i == 0 else None)
            cid_b, b = _ask(client, url, cid_b, q, image if i == 0 else None, stream=True)
            plain.append(a)
            streamed.append(b)
        assert plain == streamed == expected
        stored = client.get(f"{url}/v1/conversations/{cid_a}").json()
        assert [q for q, _ in stored["history"]] == QUESTIONS
    url = restart()  # conversations live in SQLite: a new server process continues them
    with httpx.Client(timeout=60) as client:
        stored = client.get(f"{url}/v1/conversations/{cid_b}").json()
        assert [a for _, a in stored["history"]] == expected
        cid, again = _ask(client, url, cid_b, "what colour is it ?")
        assert cid == cid_b and again == local.ask("what colour is it ?")


def test_bad_input_gets_4xx_and_the_server_keeps_serving(live_server):
    state, _ = live_server
    url = state["url"] + "/v1/chat/completions"
    good = _data_url(render(make_scene(1)))
    big = Image.new("RGB", (5000, 4000))
    cases = [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"messages": "hello"}).encode(), 400),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}, {"type": "text", "text": "hi"}]}]}).encode(), 400),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()}}, {"type": "text", "text": "hi"}]}]}).encode(), 400),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": good[:200]}}, {"type": "text", "text": "hi"}]}]}).encode(), 400),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": _data_url(big)}}, {"type": "text", "text": "hi"}]}]}).encode(), 413),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": good}}, {"type": "text", "text": "   "}]}]}).encode(), 400),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": good}}, {"type": "text", "text": "why " * 300}]}]}).encode(), 400),
        (json.dumps({"messages": [{"role": "user", "content": "is there a red circle ?"}]}).encode(), 400),
        (json.dumps({"conversation_id": "conv-doesnotexist", "messages": [{"role": "user", "content": "hi"}]}).encode(), 404),
        (b"x" * (9 * 1024 * 1024), 413),
    ]
    with httpx.Client(timeout=60) as client:
        for body, status in cases:
            r = client.post(url, content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, (body[:80], r.status_code, r.text[:200])
            assert r.json()["error"]["message"]
        assert client.get(state["url"] + "/health").status_code == 200
        assert client.get(state["url"] + "/v1/conversations/conv-nope").status_code == 404


def test_decompression_bomb_is_refused_before_decoding():
    from apps.dialogue.server import HTTPError, decode_image

    img = Image.new("1", (20000, 20000))  # 400 Mpx, a few KB as PNG
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    with pytest.raises(HTTPError) as err:
        decode_image(base64.b64encode(buf.getvalue()).decode())
    assert err.value.status == 413


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium not installed at /usr/bin/chromium "
                    "(Debian package 'chromium'; `make test` installs it)")
def test_browser_uploads_an_image_and_reads_the_answer(live_server, tmp_path, backend):
    from playwright.sync_api import sync_playwright

    from apps.dialogue.session import Session

    state, _ = live_server
    scene_png = tmp_path / "scene.png"
    image = render(make_scene(20_000_321, split="test"))
    image.save(scene_png)
    expected = Session(backend, image).ask("is there a red circle ?")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(state["url"] + "/")
            page.set_input_files("#file", str(scene_png))
            page.wait_for_selector("#preview", state="visible")
            page.fill("#question", "is there a red circle ?")
            page.click("#send")
            page.wait_for_function("document.getElementById('answer').textContent.length > 0", timeout=60_000)
            assert page.text_content("#answer") == expected
            assert "bot: " + expected in page.text_content("#log")
        finally:
            browser.close()


def test_issue15_bad_requests_answer_400_with_a_message(live_server):
    """A system message alone (was 500 with a traceback) and a non-boolean ``stream`` (``"false"`` streamed)."""
    state, _ = live_server
    url = state["url"] + "/v1/chat/completions"
    good = _data_url(render(make_scene(1)))
    user = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": good}},
                                        {"type": "text", "text": "is there a red circle ?"}]}
    cases = [
        ({"messages": [{"role": "system", "content": "you are a helpful bot"}]}, "no user message"),
        ({"messages": [user], "stream": "false"}, "JSON boolean"),
        ({"messages": [user], "stream": 1}, "JSON boolean"),
    ]
    with httpx.Client(timeout=60) as client:
        for body, words in cases:
            r = client.post(url, json=body)
            assert r.status_code == 400, (body, r.status_code, r.text[:200])
            assert words in r.json()["error"]["message"]
            assert not r.headers["content-type"].startswith("text/event-stream")
        assert client.post(url, json={"messages": [user], "stream": False}).status_code == 200


def test_a_new_image_in_a_conversation_starts_a_new_scene_context(live_server):
    state, _ = live_server
    url = state["url"]
    first, second = _data_url(render(make_scene(20_000_001, "test"))), _data_url(render(make_scene(20_000_002, "test")))
    with httpx.Client(timeout=60) as client:
        cid, _ = _ask(client, url, None, "how many objects are there ?", first)
        cid, _ = _ask(client, url, cid, "what size is it ?")
        assert len(client.get(f"{url}/v1/conversations/{cid}").json()["history"]) == 2
        cid2, _ = _ask(client, url, cid, "how many objects are there ?", second)
        assert cid2 == cid
        history = client.get(f"{url}/v1/conversations/{cid}").json()["history"]
        assert [q for q, _ in history] == ["how many objects are there ?"]       # the old rounds are gone
