"""Token encoder: turns a feature vector into a short token sequence, or encodes tokens.

    input="vector":  tokens = LN( reshape( W2 GELU(W1 x) , [T, D] ) )     [B, D_in] -> [B, T, D]
    input="tokens":  tokens_t = LN( MLP(x_t) )                           [B, T, D_in] -> [B, T, D]

Vector modalities (tabular rows, pooled embeddings) get a few tokens so the attention-based
fusions (transformer, cross-modal attention) have something to attend over.

Only the branch for the declared ``input`` is built: a parameter that never receives a gradient
makes DistributedDataParallel fail ("Expected to have finished reduction in the prior
iteration"), and it would be dead weight in every checkpoint.  Checkpoints written before this
change hold both branches; the unused one is dropped when they are loaded.
"""
from __future__ import annotations

from torch import Tensor, nn

INPUTS = ("vector", "tokens")


class TokenEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, num_tokens: int = 4, hidden: int | None = None, dropout: float = 0.0,
                 input: str = "vector") -> None:
        super().__init__()
        if input not in INPUTS:
            raise ValueError(f"TokenEncoder input must be one of {INPUTS}, got '{input}'")
        hidden = hidden or max(in_dim, out_dim)
        self.in_dim, self.out_dim, self.num_tokens, self.input = in_dim, out_dim, num_tokens, input
        if input == "vector":
            self.split = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                       nn.Linear(hidden, num_tokens * out_dim))
        else:
            self.per_token = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                           nn.Linear(hidden, out_dim))
        self.norm = nn.LayerNorm(out_dim)
        self.output_kind = "tokens"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints from before only one branch was built carry the other one too
        unused = f"{prefix}{'per_token' if self.input == 'vector' else 'split'}."
        for key in [k for k in state_dict if k.startswith(unused)]:
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"TokenEncoder expects last dimension {self.in_dim}, got shape {tuple(x.shape)}")
        expected = 2 if self.input == "vector" else 3
        if x.dim() != expected:
            other = "tokens" if self.input == "vector" else "vector"
            raise ValueError(f"TokenEncoder(input='{self.input}') takes {'[B, D]' if expected == 2 else '[B, T, D]'}, "
                             f"got shape {tuple(x.shape)}; build it with input='{other}' "
                             f"(EncoderConfig options={{'input': '{other}'}}) for this modality")
        if self.input == "vector":
            return self.norm(self.split(x).view(x.shape[0], self.num_tokens, self.out_dim))
        return self.norm(self.per_token(x))
