"""SceneVLM: a small LLaVA-shaped vision-language model registered with transformers' Auto classes.

    image --objects.extract_objects--> K region crops + geometry
          --ObjectEncoder (CNN + Fourier coordinates)--> [B, K, V]
          --projector (MLP)--> K image tokens [B, K, D]
    tokens: USER: question <image>*K ASSISTANT: answer </s> USER: ... <image>*K ASSISTANT: (LlamaForCausalLM)

==================  ==================  ===============================================
tensor              shape               meaning
==================  ==================  ===============================================
``input_ids``       ``[N, T]``          prompt (+ answers while training); groups of K
                                        ``<image>`` tokens (one group after each question
                                        in the default "per_turn" layout)
``object_pixels``   ``[B, K, 3, P, P]`` region crops, one row per image
``object_geometry`` ``[B, K, 9]``       cx, cy, w, h, area, fill, mean rgb
``object_mask``     ``[B, K]``          False = empty slot (a learned "no object" token)
``image_index``     ``[N]``             which image each row reads (default: row i -> i),
                                        so 20 questions of one image encode it once
==================  ==================  ===============================================

It is a ``PreTrainedModel`` + ``GenerationMixin``: ``save_pretrained``/``from_pretrained``,
``generate`` with a KV cache, and ``AutoModelForImageTextToText`` all work once this module is
imported (it registers the config and the model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    GenerationMixin,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from .objects import GEOMETRY_DIM
from .tokenizer import IMAGE, vocabulary


class SceneVLMConfig(PretrainedConfig):
    model_type = "mmcore_scene_vlm"
    sub_configs = {"text_config": LlamaConfig}

    def __init__(self, text_config: dict | LlamaConfig | None = None, num_image_tokens: int = 8, patch_size: int = 12,
                 vision_hidden: int = 96, fourier_bands: int = 6, image_token_id: int | None = None,
                 image_layout: str = "per_turn", object_identity: bool = False, colour_gain: float = 5.0,
                 reasoner_layers: int = 0, attribute_words: bool = False, max_distance: int = 12,
                 word_match: bool = False, relate: bool = False, relate_gate: bool = False, handoff: bool = False,
                 tally: bool = False, **kwargs) -> None:
        vocab = vocabulary()
        if text_config is None:
            text_config = {}
        if isinstance(text_config, dict):
            defaults = dict(vocab_size=len(vocab), hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                            pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)
            defaults.update({k: v for k, v in text_config.items() if k != "model_type"})
            text_config = LlamaConfig(**defaults)
        self.text_config = text_config
        self.num_image_tokens = num_image_tokens
        self.patch_size = patch_size
        self.vision_hidden = vision_hidden
        self.fourier_bands = fourier_bands
        self.image_layout = image_layout
        # object_identity: each object token also carries (a) the input embedding of its palette colour
        # word and (b) a linear read of its raw geometry, so "the red object" can be found by matching
        # a question word to a token and positions reach the transformer unmixed (off = old checkpoints)
        self.object_identity = object_identity
        self.colour_gain = colour_gain
        # reasoner_layers > 0: a question-aware object reasoner with a mention memory (reasoner.py);
        # attribute_words: object tokens also carry the (predicted) shape and size words, trained
        # from the scene graph (the abstention guard reads the same head)
        self.reasoner_layers = reasoner_layers
        self.attribute_words = attribute_words
        self.max_distance = max_distance
        # word_match (needs object_identity + attribute_words): the reasoner is told, per object, whether
        # the question names its colour / shape / size; relate: a read-out of the other objects relative
        # to the object the question names (closest, furthest, left of it). Off for older checkpoints.
        self.word_match = word_match
        self.relate = relate
        self.relate_gate = relate_gate   # a question gate on the relate read-out (off: the first relate models)
        # handoff (needs relate): "the object closest to X" puts the closest object in focus through the
        # relate selection; tally: counts as a sum of per-object gates. Off for older checkpoints.
        self.handoff = handoff
        self.tally = tally
        self.image_token_id = vocab.index(IMAGE) if image_token_id is None else image_token_id
        kwargs.setdefault("pad_token_id", text_config.pad_token_id)
        kwargs.setdefault("eos_token_id", text_config.eos_token_id)
        kwargs.setdefault("bos_token_id", text_config.bos_token_id)
        super().__init__(**kwargs)


def fourier(xy: torch.Tensor, bands: int) -> torch.Tensor:
    """sin/cos of ``2^k * pi * xy`` for k < bands: ``[..., 2] -> [..., 4*bands]``."""
    freqs = (2.0 ** torch.arange(bands, device=xy.device, dtype=xy.dtype)) * math.pi
    angles = xy[..., None] * freqs  # [..., 2, bands]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class ObjectEncoder(nn.Module):
    """Crop CNN + explicit coordinates -> one vector per object slot: ``[B,K,3,P,P] -> [B,K,V]``."""

    def __init__(self, config: SceneVLMConfig) -> None:
        super().__init__()
        v = config.vision_hidden
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.bands = config.fourier_bands
        geo = GEOMETRY_DIM + 4 * config.fourier_bands + 3  # + cx^2, cy^2, cx*cy
        self.mix = nn.Sequential(nn.Linear(256 + geo, v), nn.GELU(), nn.Linear(v, v))

    def forward(self, pixels: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        b, k = pixels.shape[:2]
        feats = self.cnn(pixels.flatten(0, 1)).view(b, k, -1)
        xy = geometry[..., :2]
        quad = torch.stack([xy[..., 0] ** 2, xy[..., 1] ** 2, xy[..., 0] * xy[..., 1]], dim=-1)
        return self.mix(torch.cat([feats, geometry, fourier(xy, self.bands), quad], dim=-1))


@dataclass
class SceneVLMOutput(CausalLMOutputWithPast):
    """The language model's output plus what the object side computed (``None`` when unused).

    ``pointer_logits`` ``[G, K+1]`` per image group (round), focus over objects then "none";
    ``group_row`` / ``group_round`` ``[G]`` which row and round each group belongs to;
    ``mentions`` ``[N, R]`` the focus slots used for the mention memory (-1 none);
    ``anchor_logits`` ``[G, K+1]`` per group, the question's referent over objects then "none";
    ``relation_logits`` ``[G]`` per group, "the question asks about an object related to its referent";
    ``counts`` ``[G, 2]`` per group, the reasoner's soft counts (tally; relate gate), NaN where off;
    ``attribute_logits`` ``[B, K, len(SHAPES) + len(SIZES)]`` per object slot.
    """
    pointer_logits: torch.Tensor | None = None
    group_row: torch.Tensor | None = None
    group_round: torch.Tensor | None = None
    mentions: torch.Tensor | None = None
    anchor_logits: torch.Tensor | None = None
    relation_logits: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    attribute_logits: torch.Tensor | None = None


class SceneVLMForConditionalGeneration(PreTrainedModel, GenerationMixin):
    config_class = SceneVLMConfig
    base_model_prefix = "scene_vlm"
    main_input_name = "input_ids"
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_attention_backend = True
    _no_split_modules = ["LlamaDecoderLayer"]

    def __init__(self, config: SceneVLMConfig) -> None:
        super().__init__(config)
        d = config.text_config.hidden_size
        self.vision_tower = ObjectEncoder(config)
        self.multi_modal_projector = nn.Sequential(nn.Linear(config.vision_hidden, d), nn.GELU(), nn.Linear(d, d))
        self.empty_slot = nn.Parameter(torch.zeros(d))
        self.language_model = LlamaForCausalLM(config.text_config)
        if config.object_identity:
            from .scenes import PALETTE

            vocab = vocabulary()
            self.geometry_skip = nn.Linear(GEOMETRY_DIM + 4 * config.fourier_bands, d)
            # word embeddings start tiny (std 0.02): a learned gain lets the colour word dominate early
            self.colour_gain = nn.Parameter(torch.tensor(float(config.colour_gain)))
            # plain lists, not buffers: from_pretrained builds on the meta device and would leave them empty
            self._palette_rgb = [[c / 255.0 for c in rgb] for rgb in PALETTE.values()]
            self._palette_ids = [vocab.index(c) for c in PALETTE]
        if config.attribute_words:
            from .scenes import SHAPES, SIZES

            vocab = vocabulary()
            self.attribute_head = nn.Linear(config.vision_hidden, len(SHAPES) + len(SIZES))
            self.attribute_gain = nn.Parameter(torch.tensor(float(config.colour_gain)))
            self._attribute_ids = [vocab.index(w) for w in (*SHAPES, *SIZES)]
            self._n_shapes = len(SHAPES)
        if config.word_match and not (config.reasoner_layers and config.object_identity and config.attribute_words):
            raise ValueError("word_match needs reasoner_layers > 0, object_identity and attribute_words")
        if config.relate and not config.reasoner_layers:
            raise ValueError("relate needs reasoner_layers > 0")
        if config.handoff and not config.relate:
            raise ValueError("handoff needs relate")
        if config.tally and not config.reasoner_layers:
            raise ValueError("tally needs reasoner_layers > 0")
        if config.reasoner_layers:
            from .reasoner import ObjectReasoner

            self.reasoner = ObjectReasoner(d, config.reasoner_layers, config.text_config.num_attention_heads,
                                           config.max_distance, grounding=config.word_match,
                                           relate=config.relate, relate_gate=config.relate_gate,
                                           handoff=config.handoff, tally=config.tally)
        self._aux: dict = {}
        self._slots: dict = {}   # per-slot word distributions and centres for the reasoner (image_features)
        self.post_init()
        if config.reasoner_layers:
            self.reasoner.zero_extras()

    def identity_features(self, geometry: torch.Tensor) -> torch.Tensor:
        """``[B, K, 9] -> [B, K, D]``: colour-word embedding of the nearest palette colour + linear geometry.

        The region's interior median colour (robust to soft edges, outlines and JPEG) is named by the
        nearest palette shade in CIELAB (:func:`objects.palette_index`); adding that word's embedding
        lets attention match "red" in the question to the red object from the first step instead of
        having to discover the RGB -> word mapping.
        """
        from .objects import palette_index

        rgb = geometry[..., 6:9].float()
        nearest = palette_index(rgb, torch.tensor(self._palette_rgb, device=rgb.device))
        colour_ids = torch.tensor(self._palette_ids, device=rgb.device)[nearest]
        colour = self.get_input_embeddings()(colour_ids)
        if self.config.word_match:
            self._slots["colour"] = F.one_hot(colour_ids, self.config.text_config.vocab_size).float()
        geo = torch.cat([geometry, fourier(geometry[..., :2], self.config.fourier_bands)], dim=-1)
        return self.colour_gain * colour + self.geometry_skip(geo)

    def attribute_features(self, vision: torch.Tensor) -> torch.Tensor:
        """``[B, K, V] -> [B, K, D]``: expected shape-word + size-word embeddings of each object.

        The head is trained from the scene graph (``attribute_logits``); its soft choice of words
        lets the question's "circle" / "large" match an object token directly.
        """
        logits = self.attribute_head(vision)
        self._aux["attribute_logits"] = logits
        ids = torch.tensor(self._attribute_ids, device=vision.device)
        words = self.get_input_embeddings()(ids)
        s = self._n_shapes
        probs = torch.cat([logits[..., :s].softmax(-1), logits[..., s:].softmax(-1)], dim=-1)
        if self.config.word_match:
            table = vision.new_zeros(*probs.shape[:2], 2, self.config.text_config.vocab_size)
            table[..., 0, ids[:s]] = probs[..., :s].float()
            table[..., 1, ids[s:]] = probs[..., s:].float()
            self._slots["shape_size"] = table
        return self.attribute_gain * probs @ words

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def image_features(self, object_pixels: torch.Tensor, object_geometry: torch.Tensor,
                       object_mask: torch.Tensor) -> torch.Tensor:
        """``[B, K, D]`` image tokens; empty slots get the learned ``empty_slot`` vector."""
        self._slots = {}
        vision = self.vision_tower(object_pixels, object_geometry)
        tokens = self.multi_modal_projector(vision)
        if self.config.attribute_words:
            tokens = tokens + self.attribute_features(vision).to(tokens.dtype)
        if self.config.object_identity:
            tokens = tokens + self.identity_features(object_geometry).to(tokens.dtype)
        if self.config.word_match:
            self._slots["words"] = torch.cat([self._slots.pop("colour")[..., None, :],
                                              self._slots.pop("shape_size")], dim=2)       # [B, K, 3, V]
        if self.config.relate:
            self._slots["xy"] = object_geometry[..., :2]
        return torch.where(object_mask[..., None], tokens, self.empty_slot.to(tokens.dtype))

    def embed(self, input_ids: torch.Tensor, object_pixels=None, object_geometry=None, object_mask=None,
              image_index=None, mention_slots=None) -> torch.Tensor:
        self._aux = {}
        embeds = self.get_input_embeddings()(input_ids)
        is_image = input_ids == self.config.image_token_id
        if object_pixels is None or not bool(is_image.any()):
            return embeds
        counts = is_image.sum(dim=1)
        k = self.config.num_image_tokens
        if bool((counts % k != 0).any()):
            raise ValueError(f"each prompt needs its <image> tokens in groups of {k}; got counts {counts.tolist()}")
        feats = self.image_features(object_pixels, object_geometry, object_mask)
        if image_index is None:
            image_index = torch.arange(input_ids.shape[0], device=input_ids.device)
        groups = (counts // k).to(image_index.device)
        if self.config.reasoner_layers:
            from .reasoner import reason

            tokens, added = reason(self, input_ids, embeds, is_image, feats, object_mask, image_index, groups,
                                   mention_slots)
            feats = tokens.reshape(-1, feats.shape[-1]).to(embeds.dtype)
            embeds = embeds + added
        else:
            feats = feats[image_index.repeat_interleave(groups)].reshape(-1, feats.shape[-1]).to(embeds.dtype)
        embeds = embeds.clone()
        embeds[is_image] = feats
        return embeds

    def forward(self, input_ids=None, object_pixels=None, object_geometry=None, object_mask=None, image_index=None,
                attention_mask=None, position_ids=None, inputs_embeds=None, mention_slots=None,
                **kwargs) -> SceneVLMOutput:
        """Everything else (attention_mask, labels, the KV cache, logits_to_keep) goes to the Llama.

        ``mention_slots`` ``[N, R]`` (-1 none) teacher-forces the mention memory; without it the
        model resolves each round's focus itself, round by round, as a bot must.
        """
        self._aux = {}
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, object_pixels, object_geometry, object_mask, image_index,
                                       mention_slots)
        self._slots = {}    # consumed by the reasoner; do not keep the image's graph alive
        out = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  position_ids=position_ids, **kwargs)
        aux, self._aux = self._aux, {}
        return SceneVLMOutput(**out, **aux)

    def prepare_inputs_for_generation(self, input_ids, object_pixels=None, object_geometry=None, object_mask=None,
                                      **kwargs):
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        # the image goes in with the prompt only; later steps read it from the KV cache
        if inputs.get("input_ids") is not None and bool((inputs["input_ids"] == self.config.image_token_id).any()):
            inputs.update(object_pixels=object_pixels, object_geometry=object_geometry, object_mask=object_mask)
        return inputs


AutoConfig.register(SceneVLMConfig.model_type, SceneVLMConfig, exist_ok=True)
AutoModelForImageTextToText.register(SceneVLMConfig, SceneVLMForConditionalGeneration, exist_ok=True)
