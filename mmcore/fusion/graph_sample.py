"""Graph fusion over samples (MOGONET-style, Wang et al. 2021): per modality, a sample-similarity
graph (kNN, or edges you give) over the samples that *have* that modality; GCN/GAT propagate
features between neighbouring samples; the per-modality outputs are averaged over the present
modalities.

Maths.  For modality ``m`` with present rows ``S_m``:

    G_m = kNN_k( {x_{b,m} : b in S_m} )   (cosine similarity; symmetrised)  or given edges
    h^0 = W_m x_{., m};   h^{l+1} = h^l + act( Conv_l^m(h^l, G_m) )           on S_m only
    z_b = mean_{m in P(b)} h^L_{b,m}                                           (zeros if none)

The graph is built over the batch (transductive use: pass the whole node set, or big batches).
kNN is computed in plain torch (:func:`knn_graph`), since ``torch_cluster`` is optional.
A sample without modality ``m`` is not a node of ``G_m``: nothing propagates through it.

Shapes.

==============  ====================  ====================================================
argument        shape                 note
==============  ====================  ====================================================
features[m]     [B, D_m] or           tokens are mean-pooled over ``token_mask``
                [B, T_m, D_m]
present[m]      [B] bool
edge_index      [2, E] or dict        optional given graph over batch rows (one for all
                                      modalities, or one per modality); replaces kNN
output          [B, out_dim]
==============  ====================  ====================================================
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import subgraph

from ._common import check_inputs, masked_mean, pooled
from .graph_modality import make_conv


@torch.no_grad()
def knn_graph(x: Tensor, k: int, metric: str = "cosine", symmetric: bool = True) -> Tensor:
    """Edges from each node's ``k`` nearest other nodes to it: ``edge_index [2, E]`` (source, target).

    ``metric``: ``cosine`` (largest similarity) or ``euclidean`` (smallest distance).
    ``symmetric`` adds the reverse of every edge (duplicates removed).  ``k`` is clipped to
    ``N - 1``; fewer than two nodes give no edges.
    """
    n = x.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return torch.empty(2, 0, dtype=torch.long, device=x.device)
    if metric == "cosine":
        xn = F.normalize(x.float(), dim=-1)
        score = xn @ xn.T
    elif metric == "euclidean":
        score = -torch.cdist(x.float(), x.float())
    else:
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got '{metric}'")
    score.fill_diagonal_(float("-inf"))
    neighbours = score.topk(k, dim=1).indices                               # [N, k]
    target = torch.arange(n, device=x.device).repeat_interleave(k)
    edge_index = torch.stack([neighbours.reshape(-1), target])
    if symmetric:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
        edge_index = torch.unique(edge_index, dim=1)
    return edge_index


class SampleGraphFusion(nn.Module):
    input_kind = "pooled"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, k: int = 8, conv: str = "gcn", layers: int = 2,
                 heads: int = 2, metric: str = "cosine") -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.out_dim = out_dim
        self.k = k
        self.metric = metric
        self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        self.convs = nn.ModuleDict({
            m: nn.ModuleList(make_conv(conv, out_dim, heads) for _ in range(layers)) for m in self.in_dims
        })
        self.act = nn.GELU()

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None,
                edge_index: Tensor | Mapping[str, Tensor] | None = None) -> Tensor:
        present = check_inputs(features, present, self.in_dims, token_mask)
        feats = pooled(features, token_mask)
        b = next(iter(feats.values())).shape[0]
        outs = []
        for m, x in feats.items():
            rows = present[m].nonzero(as_tuple=True)[0]
            given = edge_index.get(m) if isinstance(edge_index, Mapping) else edge_index
            if given is not None:
                graph, _ = subgraph(rows, given.to(x.device), relabel_nodes=True, num_nodes=b)
            else:
                graph = knn_graph(x[rows], self.k, self.metric)
            h = self.proj[m](x[rows])
            for conv in self.convs[m]:
                h = h + self.act(conv(h, graph))
            out = h.new_zeros(b, self.out_dim).index_copy(0, rows, h)
            outs.append(out)
        return masked_mean(outs, [present[m] for m in feats])
