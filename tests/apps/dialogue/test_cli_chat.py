"""`mm dialogue chat`: a bad ``:image`` path is reported and the session goes on (it used to exit)."""
import io
import sys

from apps.dialogue import cli
from apps.dialogue.scenes import make_scene, render


def test_bad_image_path_keeps_the_session(tmp_path, monkeypatch, capsys, backend):
    monkeypatch.setattr("apps.dialogue.session.load_backend", lambda *a, **k: backend)
    path = tmp_path / "scene.png"
    render(make_scene(20_000_005, "test")).save(path)
    lines = f":image {tmp_path / 'missing.png'}\nhow many objects are there ?\n:image {path}\nwhat size is it ?\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    args = type("Args", (), {"image": str(path), "model": None, "device": "cpu", "question": None})()
    assert cli.cmd_chat(args) == 0
    out = capsys.readouterr().out
    assert "missing.png" in out and "error" in out
    assert "you: how many objects are there ?" in out and "(new image; history cleared)" in out
    assert out.count("bot: ") == 2
