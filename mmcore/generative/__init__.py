"""Multimodal generative models: masked experts, MVAE, MMVAE, MoPoE, a conditional VAE and a
shared/private disentangled VAE, one interface (:class:`MultimodalVAE`), KL annealing,
coherence metrics and PNG grids."""
from .annealing import KLAnnealing
from .base import MultimodalVAE, VAEOutput
from .distributions import DiagGaussian, GaussianMixture
from .dmvae import DisentangledVAE
from .experts import kl_to_standard_normal, mixture_log_prob, product_of_experts, subsets
from .mmvae import MMVAE
from .mopoe import MoPoE
from .mvae import MVAE, ConditionalVAE

MODELS = {"mvae": MVAE, "mmvae": MMVAE, "mopoe": MoPoE, "cvae": ConditionalVAE, "dmvae": DisentangledVAE}

__all__ = ["KLAnnealing", "MultimodalVAE", "VAEOutput", "DisentangledVAE", "DiagGaussian", "GaussianMixture",
           "kl_to_standard_normal", "mixture_log_prob", "product_of_experts", "subsets", "MMVAE", "MoPoE", "MVAE",
           "ConditionalVAE", "MODELS"]
