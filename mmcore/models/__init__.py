"""``MultimodalModel(encoders, fusion, head)``, its typed configs, and safetensors save/load."""
from .config import EncoderConfig, FusionConfig, HeadConfig, ModelConfig
from .io import load_model, save_model
from .multimodal import MultimodalModel, build_head

__all__ = ["MultimodalModel", "ModelConfig", "EncoderConfig", "FusionConfig", "HeadConfig",
           "build_head", "save_model", "load_model"]
