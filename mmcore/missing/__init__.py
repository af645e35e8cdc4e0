"""Missing modalities: robustness training (modality dropout, learned missing tokens,
curriculum), completion at inference (mean / nearest-neighbour / learned imputers, MCTN-style
cycle translation, hallucination networks) and domain alignment/adaptation (CORAL, MMD,
gradient-reversal DANN).  Multimodal VAEs that complete modalities live in mmcore.generative."""
from .adapt import adapt, fused_features
from .domain import DomainClassifier, GradientReversal, coral_loss, mmd_loss
from .dropout import DropoutCurriculum, DropoutModel, ModalityDropout
from .hallucination import HallucinationNet
from .imputers import Imputed, LearnedImputer, MeanImputer, NearestNeighbourImputer, ZeroFilled, fill
from .tokens import MissingTokenModel, MissingTokens
from .translation import CycleTranslator

__all__ = ["adapt", "fused_features", "DomainClassifier", "GradientReversal", "coral_loss", "mmd_loss",
           "DropoutCurriculum", "DropoutModel", "ModalityDropout", "HallucinationNet", "Imputed", "LearnedImputer",
           "MeanImputer", "NearestNeighbourImputer", "ZeroFilled", "fill", "MissingTokenModel", "MissingTokens",
           "CycleTranslator"]
