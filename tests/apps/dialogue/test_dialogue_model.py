"""SceneVLM as a transformers model, and a tiny random LLaVA served through the same bot."""
import torch
from PIL import Image

from apps.dialogue.model import SceneVLMConfig, SceneVLMForConditionalGeneration
from apps.dialogue.objects import extract_objects
from apps.dialogue.scenes import make_scene, render
from apps.dialogue.session import HFBackend, Session, load_backend
from apps.dialogue.tokenizer import IMAGE, build_prompt, make_tokenizer
from apps.dialogue.train import export_pretrained

TINY = {"text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                        "num_key_value_heads": 2}, "vision_hidden": 32}


def _inputs(model, question="what colour is the large circle ?"):
    tok = make_tokenizer()
    prompt = build_prompt([], question).replace(IMAGE, " ".join([IMAGE] * model.config.num_image_tokens))
    ids = tok(prompt, return_tensors="pt").input_ids
    objs = {k: v[None] for k, v in extract_objects(render(make_scene(3))).items()}
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), **objs}


def test_save_load_round_trip_and_cached_generation_match(tmp_path):
    model = SceneVLMForConditionalGeneration(SceneVLMConfig(**TINY)).eval()
    inputs = _inputs(model)
    export_pretrained(model, tmp_path / "m", half=False)
    from transformers import AutoModelForImageTextToText

    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "m").eval()
    assert isinstance(loaded, SceneVLMForConditionalGeneration)
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, loaded(**inputs).logits, atol=1e-6)
        cached = loaded.generate(**inputs, max_new_tokens=4, do_sample=False)
        # greedy decoding by hand, no cache: the same tokens
        ids = inputs["input_ids"]
        for _ in range(4):
            nxt = loaded(**{**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids)}).logits[:, -1].argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], 1)
    assert torch.equal(cached[:, : ids.shape[1]], ids[:, : cached.shape[1]])


def test_image_changes_the_answer_logits():
    model = SceneVLMForConditionalGeneration(SceneVLMConfig(**TINY)).eval()
    a = _inputs(model)
    b = {**a, **{k: v[None] for k, v in extract_objects(render(make_scene(4))).items()}}
    blind = {**a, "object_mask": torch.zeros_like(a["object_mask"])}
    with torch.no_grad():
        la, lb, lblind = (model(**x).logits[0, -1] for x in (a, b, blind))
    assert not torch.allclose(la, lb) and not torch.allclose(la, lblind)


def _tiny_llava(path):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    words = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "USER", "ASSISTANT", ":", "what", "is", "it", "?", "red",
             "circle", "yes", "no"]
    core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    template = ("{% for m in messages %}{{ m['role'] | upper }} : {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
                "{% if add_generation_prompt %}ASSISTANT : {% endif %}")
    image_proc = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    proc = LlavaProcessor(image_processor=image_proc, tokenizer=tok, patch_size=14, chat_template=template,
                          vision_feature_select_strategy="full", num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=28, patch_size=14)
    text = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, eos_token_id=3, bos_token_id=2)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=4, vision_feature_select_strategy="full",
                      vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(cfg).save_pretrained(path)
    proc.save_pretrained(path)


def test_any_local_hf_vision_language_model_chats_through_the_bot(tmp_path):
    _tiny_llava(tmp_path / "llava")
    backend = load_backend(tmp_path / "llava")
    assert isinstance(backend, HFBackend)
    backend.max_new_tokens = 3
    chat = Session(backend, Image.new("RGB", (40, 30), (200, 10, 10)))
    first = chat.ask("what is it ?")
    second = "".join(chat.stream("is it red ?"))
    assert isinstance(first, str) and isinstance(second, str)
    assert [q for q, _ in chat.history] == ["what is it ?", "is it red ?"]


def test_init_from_a_saved_model_keeps_its_weights_and_starts_only_new_parts_fresh(tmp_path):
    """``mm dialogue train --init-from DIR``: a model with parts switched on (hand-off, tally) starts
    as the saved model it grows from; a model of another size is refused, naming the file."""
    import pytest

    from apps.dialogue.train import build_model, warm_start

    torch.manual_seed(0)
    old = build_model("vlm", {**TINY, "handoff": False, "tally": False}).eval()
    export_pretrained(old, tmp_path / "old", half=False)
    new = build_model("vlm", TINY).eval()
    fresh = warm_start(new, tmp_path / "old")
    assert {name.rsplit(".", 1)[0] for name in fresh} == {"reasoner.handoff", "reasoner.tally", "reasoner.read_objcount"}
    with torch.no_grad():
        new.reasoner.handoff.bias.fill_(-1e4)            # hand-off closed: the old pointer alone
        inputs = _inputs(old)
        torch.testing.assert_close(new(**inputs).logits, old(**inputs).logits)
    regrown = build_model("vlm", TINY)
    fresh = warm_start(regrown, tmp_path / "old", fresh=("reasoner.gate_geometry",))   # --fresh PREFIX
    assert "reasoner.gate_geometry.weight" in fresh
    assert torch.equal(regrown.reasoner.gate_geometry.weight, torch.zeros_like(regrown.reasoner.gate_geometry.weight))
    wider = build_model("vlm", {**TINY, "text_config": {**TINY["text_config"], "hidden_size": 48}})
    with pytest.raises(ValueError, match="model.safetensors"):
        warm_start(wider, tmp_path / "old")
