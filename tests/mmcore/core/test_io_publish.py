"""mmcore.utils.io: a folder published over a file or a folder, and a file over a folder."""
from mmcore.utils.io import atomic_write_text, publish_dir


def test_publish_dir_replaces_a_file_and_a_folder_and_leaves_nothing_aside(tmp_path):
    target = tmp_path / "posts.parquet"
    target.write_text("single file")
    new = tmp_path / ".tmp1"
    (new / "day=1").mkdir(parents=True)
    (new / "day=1" / "part-0").write_text("a")
    publish_dir(new, target)
    assert (target / "day=1" / "part-0").read_text() == "a" and not new.exists()
    newer = tmp_path / ".tmp2"
    (newer / "day=2").mkdir(parents=True)
    publish_dir(newer, target)
    assert [p.name for p in target.iterdir()] == ["day=2"]
    atomic_write_text(target, "a file again")  # a plain atomic write replaces the folder too
    assert target.read_text() == "a file again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posts.parquet"]
