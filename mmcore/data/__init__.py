"""mmcore's data contract: modality tensors plus a per-modality ``present`` mask."""
from .batch import MultimodalBatch
from .collate import CollateError, MultimodalCollator, collate_multimodal

__all__ = ["MultimodalBatch", "MultimodalCollator", "collate_multimodal", "CollateError"]
from .toy import ToyMultimodalDataset  # noqa: E402

__all__ += ["ToyMultimodalDataset"]
