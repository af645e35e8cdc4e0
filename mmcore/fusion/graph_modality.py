"""Graph fusion over modality nodes: each sample a small graph of its present modalities (GCN/GAT)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv
from torch_geometric.utils import scatter

from ._common import pooled, prepare, reset_children


def make_conv(kind: str, dim: int, heads: int) -> nn.Module:
    if kind == "gcn":
        return GCNConv(dim, dim)
    if kind == "gat":
        if dim % heads:
            raise ValueError(f"GAT width {dim} is not divisible by {heads} heads")
        return GATConv(dim, dim // heads, heads=heads)
    raise ValueError(f"conv must be 'gcn' or 'gat', got '{kind}'")


def modality_graph(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """From a ``[B, M]`` present mask: node (sample, modality) pairs and the per-sample cliques.

    Returns ``(node_sample [N], node_modality [N], edge_index [2, E])``; nodes are numbered in
    row-major order of ``mask``.
    """
    b, m = mask.shape
    node_sample, node_modality = mask.nonzero(as_tuple=True)
    ids = torch.full((b, m), -1, dtype=torch.long, device=mask.device)
    ids[node_sample, node_modality] = torch.arange(node_sample.numel(), device=mask.device)
    src, dst = [], []
    for i in range(m):
        for j in range(m):
            if i != j:
                both = mask[:, i] & mask[:, j]
                src.append(ids[both, i])
                dst.append(ids[both, j])
    if src:
        edge_index = torch.stack([torch.cat(src), torch.cat(dst)])
    else:
        edge_index = torch.empty(2, 0, dtype=torch.long, device=mask.device)
    return node_sample, node_modality, edge_index


class ModalityGraphFusion(nn.Module):
    r"""Graph fusion over modality nodes: each sample is a small graph whose nodes are its *present*
    modalities, fused by GCN or GAT (torch_geometric) and mean-pooled per sample.

    Papers: GCN, Kipf & Welling 2017 (https://arxiv.org/abs/1609.02907); GAT, Veličković et al. 2018
    (https://arxiv.org/abs/1710.10903).

    Maths.  Node ``(b, m)`` exists iff modality ``m`` is present in sample ``b``; its feature is
    ``h^0_{b,m} = W_m x_{b,m} + e_m`` (projection plus a modality-type embedding, so the graph knows
    which node is which).  Nodes of one sample are fully connected (both directions), and each
    layer applies

        GCN:  h^{l+1} = h^l + act( D^-1/2 (A + I) D^-1/2 h^l Theta )
        GAT:  h^{l+1} = h^l + act( sum_j alpha_ij Theta h^l_j ),  alpha = softmax_j(LeakyReLU(a^T[...]))

    then ``z_b = mean_{m in P(b)} h^L_{b,m}``.  An absent modality has no node at all, so it is
    excluded by construction; a sample with no modality gets ``z_b = 0``.

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, D_m] or           tokens are mean-pooled over ``token_mask``
                    [B, T_m, D_m]
    present[m]      [B] bool
    nodes           [N, out_dim]          N = number of present (sample, modality) pairs
    edge_index      [2, E]                internal, E = sum_b |P(b)| (|P(b)| - 1)
    output          [B, out_dim]
    ==============  ====================  ====================================================
    """

    input_kind = "pooled"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, conv: str = "gcn", layers: int = 2,
                 heads: int = 2) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.modalities = list(self.in_dims)
        self.out_dim = out_dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        self.type_emb = nn.Parameter(torch.randn(len(self.modalities), out_dim) * 0.02)
        self.convs = nn.ModuleList(make_conv(conv, out_dim, heads) for _ in range(layers))
        self.act = nn.GELU()

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)
        nn.init.normal_(self.type_emb, std=0.02)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.in_dims, token_mask)
        feats = pooled(features, token_mask)
        names = list(feats)
        b = next(iter(feats.values())).shape[0]
        mask = torch.stack([present[m] for m in names], 1)                       # [B, M]
        node_sample, node_col, edge_index = modality_graph(mask)
        projected = torch.stack([self.proj[m](feats[m]) for m in names], 1)     # [B, M, D]
        type_index = torch.tensor([self.modalities.index(m) for m in names], device=projected.device)
        h = projected[node_sample, node_col] + self.type_emb[type_index[node_col]]
        for conv in self.convs:
            h = h + self.act(conv(h, edge_index))
        return scatter(h, node_sample, dim=0, dim_size=b, reduce="mean")
