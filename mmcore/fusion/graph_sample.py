"""Graph fusion over samples (MOGONET-style): kNN sample-similarity graphs per modality, GCN/GAT
propagation, a mean over the present modalities; transductive or inductive (reference bank)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import subgraph

from ._common import masked_mean, pooled, prepare, reset_children
from .graph_modality import make_conv

MODES = ("transductive", "inductive")


def _scores(query: Tensor, keys: Tensor, metric: str) -> Tensor:
    """``[Q, N]`` similarity of every query to every key (larger = nearer)."""
    if metric == "cosine":
        return F.normalize(query.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T
    if metric == "euclidean":
        return -torch.cdist(query.float(), keys.float())
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got '{metric}'")


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
    score = _scores(x, x, metric)
    score.fill_diagonal_(float("-inf"))
    neighbours = score.topk(k, dim=1).indices                               # [N, k]
    target = torch.arange(n, device=x.device).repeat_interleave(k)
    edge_index = torch.stack([neighbours.reshape(-1), target])
    if symmetric:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
        edge_index = torch.unique(edge_index, dim=1)
    return edge_index


@torch.no_grad()
def knn_to_reference(query: Tensor, reference: Tensor, k: int, metric: str = "cosine", offset: int = 0) -> Tensor:
    """Edges from each query's ``k`` nearest reference rows to the query: ``[2, Q·k]``.

    Reference rows are nodes ``0..R-1``, queries nodes ``offset..offset+Q-1``.  Only reference
    rows send, so no query reads another query.
    """
    k = min(k, reference.shape[0])
    if k <= 0 or query.shape[0] == 0:
        return torch.empty(2, 0, dtype=torch.long, device=query.device)
    neighbours = _scores(query, reference, metric).topk(k, dim=1).indices  # [Q, k]
    target = offset + torch.arange(query.shape[0], device=query.device).repeat_interleave(k)
    return torch.stack([neighbours.reshape(-1), target])


class ReferenceBank(nn.Module):
    """The stored reference set of inductive mode: per modality the pooled features ``[R_m, D_m]``
    of the reference rows that have it, and their kNN graph ``[2, E_m]``.  Buffers, so they
    travel with ``state_dict`` (loading resizes them to what was saved)."""

    def __init__(self, in_dims: Mapping[str, int]) -> None:
        super().__init__()
        for m, d in in_dims.items():
            if "." in m:
                raise ValueError(f"modality name '{m}' cannot hold a '.' (it names a buffer)")
            self.register_buffer(f"x_{m}", torch.empty(0, d))
            self.register_buffer(f"edges_{m}", torch.empty(2, 0, dtype=torch.long))

    def features(self, m: str) -> Tensor:
        return self._buffers[f"x_{m}"]

    def edges(self, m: str) -> Tensor:
        return self._buffers[f"edges_{m}"]

    def store(self, m: str, x: Tensor, edges: Tensor) -> None:
        self._buffers[f"x_{m}"] = x.detach().to(self._buffers[f"x_{m}"].dtype).clone()
        self._buffers[f"edges_{m}"] = edges.clone()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        for name, buf in list(self._buffers.items()):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != buf.shape:
                self._buffers[name] = torch.empty(saved.shape, dtype=buf.dtype, device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class SampleGraphFusion(nn.Module):
    r"""Graph fusion over samples (MOGONET, Wang et al. 2021,
    https://doi.org/10.1038/s41467-021-23774-w): per modality, a sample-similarity graph (kNN, or
    edges you give) over the samples that *have* that modality; GCN (Kipf & Welling 2017,
    https://arxiv.org/abs/1609.02907) or GAT (Veličković et al. 2018,
    https://arxiv.org/abs/1710.10903) layers propagate features between neighbouring samples; the
    per-modality outputs are averaged over the present modalities.

    Maths.  For modality ``m`` with present rows ``S_m``:

        G_m = kNN_k( {x_{b,m} : b in S_m} )   (cosine similarity; symmetrised)  or given edges
        h^0 = W_m x_{., m};   h^{l+1} = h^l + act( Conv_l^m(h^l, G_m) )           on S_m only
        z_b = mean_{m in P(b)} h^L_{b,m}                                           (zeros if none)

    A sample without modality ``m`` is not a node of ``G_m``: nothing propagates through it.
    kNN is computed in plain torch (:func:`knn_graph`), since ``torch_cluster`` is optional.

    Two modes (``mode``):

    ``transductive`` (default)  the graph is built over the *batch*: a row's output depends on
                                the other rows in it (halving a batch changes it).  Use it with
                                the whole node set in one batch, as MOGONET does.
    ``inductive``               the graph is built over a stored reference set
                                (:meth:`set_reference`, e.g. the training set): the reference
                                rows form their own kNN graph ``G_m^ref``; each batch row is a
                                node that *receives* from its ``k`` nearest reference rows and
                                sends to nobody.  A row's output depends only on itself and the
                                reference bank, never on the rest of its batch: a served model
                                gives a sample the same answer whatever it is batched with (up
                                to float rounding).  The bank is saved in ``state_dict``.

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, D_m] or           tokens are mean-pooled over ``token_mask``
                    [B, T_m, D_m]
    present[m]      [B] bool
    edge_index      [2, E] or dict        transductive only: a given graph over batch rows (one
                                          for all modalities, or one per modality); replaces kNN
    reference x_m   [R_m, D_m]            inductive only: the bank, pooled features
    output          [B, out_dim]
    ==============  ====================  ====================================================
    """

    input_kind = "pooled"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, k: int = 8, conv: str = "gcn", layers: int = 2,
                 heads: int = 2, metric: str = "cosine", mode: str = "transductive") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got '{metric}'")
        self.in_dims = dict(in_dims)
        self.out_dim = out_dim
        self.k = k
        self.metric = metric
        self.mode = mode
        self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        self.convs = nn.ModuleDict({
            m: nn.ModuleList(make_conv(conv, out_dim, heads) for _ in range(layers)) for m in self.in_dims
        })
        self.act = nn.GELU()
        # only inductive models carry a bank, so transductive checkpoints keep their keys
        self.reference = ReferenceBank(self.in_dims) if mode == "inductive" else None

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the reference bank is data and is kept)."""
        reset_children(self)

    @torch.no_grad()
    def set_reference(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                      token_mask: Mapping[str, Tensor] | None = None) -> None:
        """Store the reference set of inductive mode (typically the training set): for each
        modality, the pooled features of the rows that have it and their kNN graph."""
        if self.reference is None:
            raise RuntimeError("set_reference is for mode='inductive'; this SampleGraphFusion is transductive")
        features, present = prepare(features, present, self.in_dims, token_mask)
        feats = pooled(features, token_mask)
        for m, x in feats.items():
            rows = x[present[m]]
            self.reference.store(m, rows, knn_graph(rows, self.k, self.metric))

    def _propagate(self, m: str, x: Tensor, graph: Tensor) -> Tensor:
        h = self.proj[m](x)
        for conv in self.convs[m]:
            h = h + self.act(conv(h, graph))
        return h

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None,
                edge_index: Tensor | Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.in_dims, token_mask)
        if self.mode == "inductive" and edge_index is not None:
            raise ValueError("edge_index is for mode='transductive'; inductive mode links rows to the reference bank")
        feats = pooled(features, token_mask)
        b = next(iter(feats.values())).shape[0]
        outs = []
        for m, x in feats.items():
            rows = present[m].nonzero(as_tuple=True)[0]
            if self.mode == "inductive":
                bank = self.reference.features(m).to(x.dtype)
                if bank.shape[0] == 0:
                    raise RuntimeError(f"inductive SampleGraphFusion has no reference rows for '{m}': call "
                                       "set_reference(features, present) with the training set first")
                r = bank.shape[0]
                graph = torch.cat([self.reference.edges(m), knn_to_reference(x[rows], bank, self.k, self.metric, r)], 1)
                h = self._propagate(m, torch.cat([bank, x[rows]]), graph)[r:]
            else:
                given = edge_index.get(m) if isinstance(edge_index, Mapping) else edge_index
                if given is not None:
                    graph, _ = subgraph(rows, given.to(x.device), relabel_nodes=True, num_nodes=b)
                else:
                    graph = knn_graph(x[rows], self.k, self.metric)
                h = self._propagate(m, x[rows], graph)
            outs.append(h.new_zeros(b, self.out_dim).index_copy(0, rows, h))
        return masked_mean(outs, [present[m] for m in feats])
