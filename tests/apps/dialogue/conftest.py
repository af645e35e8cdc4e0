import socket
import threading
import time

import pytest

from apps.dialogue.session import DEFAULT_MODEL


@pytest.fixture(scope="session")
def backend():
    from apps.dialogue.session import load_backend

    if not (DEFAULT_MODEL / "config.json").exists():
        pytest.skip(f"the shipped checkpoint {DEFAULT_MODEL} is missing")
    return load_backend(None, "cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(backend, tmp_path):
    """A real uvicorn server on a free loopback port; yields (base_url, restart)."""
    import uvicorn

    from apps.dialogue.server import create_app

    state = {}

    def start():
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(backend, tmp_path / "conv.sqlite"), host="127.0.0.1",
                                               port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        state.update(server=server, thread=thread, url=f"http://127.0.0.1:{port}")
        return state["url"]

    def stop():
        state["server"].should_exit = True
        state["thread"].join(timeout=10)

    def restart():
        stop()
        return start()

    start()
    yield state, restart
    stop()
