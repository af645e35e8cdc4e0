"""Bot detection: the graph (cell mates' metadata, co-reposting) lifts F1 above text alone by the
issue's 20 points; every single account statistic stays at AUC <= 0.80 (``mm bench social --leakage``),
so no one column does it."""

from apps.social.dataset import build_tensors, load_tables
from apps.social.synthetic import SyntheticConfig, generate
from apps.social.synthetic_io import write_canonical
from apps.social.train import default_train_config, train_all


def test_graph_lifts_bot_f1_over_text(tmp_path, one_thread):
    data = generate(SyntheticConfig(n_posts=1500, n_users=800, bot_frac=0.15, seed=2))
    write_canonical(data, tmp_path / "data")
    store = build_tensors(load_tables(tmp_path / "data"))
    assert int((store.user_label.numpy()[store.user_split == "test"] == store.user_classes.index("bot")).sum()) >= 15
    report = train_all(store, tmp_path / "out", default_train_config(epochs=6, batch_size=128, device="cpu"),
                       post_models=(), user_models=("text", "graph"), log=lambda *a: None)
    f1 = {k: v["f1_positive"] for k, v in report["user"].items()}
    assert f1["graph"] >= f1["text"] + 0.20, f1
