"""Partitioned ingestion and text encoding on a local 2-worker Dask cluster give exactly the
single-process output."""
import numpy as np
import pandas as pd
import pytest

from apps.social.ingest import ingest
from apps.social.scale import dask_encode_texts, dask_ingest, plan_partitions
from apps.social.synthetic_io import GENERIC_MAPPING
from apps.social.text import hashed_features


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


def test_dask_ingest_identical_to_single_process(tmp_path, small_synthetic, client):
    _, written = small_synthetic
    inputs = [written["twitter_flat"], written["generic"]]
    # a duplicate and some bad lines spread over the partitions
    extra = tmp_path / "extra.jsonl"
    lines = open(written["generic"]).read().splitlines()
    extra.write_text("\n".join([lines[3], "{broken", lines[10], '{"id": "x"}', lines[3]]) + "\n")
    inputs.append(extra)
    kwargs = dict(mapping=GENERIC_MAPPING, media_root=None)
    single = ingest(inputs[1:], tmp_path / "single", **kwargs)
    parts = plan_partitions(inputs[1:], n_parts=3)
    assert len(parts) == 6
    multi = dask_ingest(inputs[1:], tmp_path / "multi", client=client, n_parts=3, **kwargs)
    assert multi["rows"] == single.rows and multi["rejected"] == single.rejected == 2
    assert multi["duplicates"] == single.duplicates == 3
    for table in ("posts", "users", "media", "edges", "rejects"):
        a = pd.read_parquet(tmp_path / "single" / f"{table}.parquet")
        b = pd.read_parquet(tmp_path / "multi" / f"{table}.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_dask_text_encoding_identical(small_synthetic, client):
    data, _ = small_synthetic
    texts = data.posts.text.tolist()
    x, present = dask_encode_texts(texts, client=client, chunk=70)
    assert np.array_equal(x, hashed_features(texts)) and present.sum() == data.posts.text.notna().sum()
