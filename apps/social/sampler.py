"""A pure-torch heterogeneous neighbour sampler (PyG's NeighborLoader needs pyg-lib or torch-sparse,
neither of which installs from PyPI here).

For seed nodes of one type it samples, hop by hop, at most ``fanout[h]`` incoming edges per
frontier node and per edge type (uniformly, without replacement; ``-1`` keeps all), then relabels
the union of sampled edges to local indices.  Seeds are the first nodes of their type, so a model
reads its outputs at ``[:batch_size]``.

Vectorised sampling without replacement: every incident edge of the frontier gets a uniform key,
edges are sorted by ``node + key`` (node-major, random inside a node), and the first ``k`` of each
node's run are kept.

Shapes: ``edge_index[(s, r, d)]`` is ``[2, E_r]`` with rows (source, destination) in local ids;
``n_id[t]`` is ``[N_t]`` global ids.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SampledGraph:
    n_id: dict                  # node type -> LongTensor of global ids (seeds first)
    edge_index: dict            # edge type -> LongTensor [2, E] local ids
    seed_type: str
    batch_size: int

    def to(self, device, non_blocking: bool = False) -> "SampledGraph":
        return SampledGraph({k: v.to(device) for k, v in self.n_id.items()},
                            {k: v.to(device) for k, v in self.edge_index.items()}, self.seed_type, self.batch_size)


class NeighborSampler:
    def __init__(self, edge_index: dict, num_nodes: dict, fanouts: list[int]) -> None:
        self.num_nodes = dict(num_nodes)
        self.fanouts = list(fanouts)
        self.csc = {}
        for key, index in edge_index.items():
            src, dst = index[0].long(), index[1].long()
            order = torch.argsort(dst, stable=True)
            counts = torch.bincount(dst, minlength=self.num_nodes[key[2]])
            ptr = torch.zeros(len(counts) + 1, dtype=torch.long)
            ptr[1:] = torch.cumsum(counts, 0)
            self.csc[key] = (ptr, src[order])

    def _sample_in(self, key, frontier: torch.Tensor, k: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        ptr, col = self.csc[key]
        starts = ptr[frontier]
        deg = ptr[frontier + 1] - starts
        total = int(deg.sum())
        if total == 0:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty
        group = torch.repeat_interleave(torch.arange(len(frontier)), deg)
        first = torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
        offset = torch.arange(total) - first
        edge = starts[group] + offset
        if k >= 0:
            keys = torch.rand(total, generator=generator, dtype=torch.float64)
            order = torch.argsort(group.double() + keys)
            keep = order[offset < k]  # after sorting, position-in-run equals `offset` of the slot
            edge, group = edge[keep], group[keep]
        return col[edge], frontier[group]

    def sample(self, seed_type: str, seeds: torch.Tensor, generator: torch.Generator | None = None) -> SampledGraph:
        seeds = seeds.long().flatten()
        local = {t: torch.full((n,), -1, dtype=torch.long) for t, n in self.num_nodes.items()}
        nodes = {t: [] for t in self.num_nodes}
        count = {t: 0 for t in self.num_nodes}

        def add(node_type: str, ids: torch.Tensor) -> torch.Tensor:
            ids = torch.unique(ids)  # sorted unique; order within a hop does not matter for a GNN
            new = ids[local[node_type][ids] < 0]
            local[node_type][new] = torch.arange(count[node_type], count[node_type] + len(new))
            count[node_type] += len(new)
            nodes[node_type].append(new)
            return new

        uniq_seeds = torch.unique(seeds)
        if len(uniq_seeds) != len(seeds):
            raise ValueError("seed nodes must be unique")
        local[seed_type][seeds] = torch.arange(len(seeds))
        count[seed_type] = len(seeds)
        nodes[seed_type].append(seeds)
        frontier = {seed_type: seeds}
        found = {key: [] for key in self.csc}
        for k in self.fanouts:
            grown: dict[str, list] = {}
            for key in self.csc:
                if key[2] not in frontier or len(frontier[key[2]]) == 0:
                    continue
                src, dst = self._sample_in(key, frontier[key[2]], k, generator)
                if len(src):
                    found[key].append((src, dst))
                    grown.setdefault(key[0], []).append(src)
            frontier = {t: add(t, torch.cat(parts)) for t, parts in grown.items()}
        n_id = {t: torch.cat(parts) if parts else torch.empty(0, dtype=torch.long) for t, parts in nodes.items()}
        edge_index = {}
        for key, parts in found.items():
            if parts:
                src = torch.cat([p[0] for p in parts])
                dst = torch.cat([p[1] for p in parts])
                edge_index[key] = torch.stack([local[key[0]][src], local[key[2]][dst]])
            else:
                edge_index[key] = torch.empty(2, 0, dtype=torch.long)
        return SampledGraph(n_id, edge_index, seed_type, len(seeds))

    def full(self, seed_type: str, edge_index: dict) -> SampledGraph:
        """The whole graph as one 'sample' (every node of ``seed_type`` is a seed, in order)."""
        n_id = {t: torch.arange(n) for t, n in self.num_nodes.items()}
        return SampledGraph(n_id, dict(edge_index), seed_type, self.num_nodes[seed_type])


def pyg_lib_available() -> bool:
    """True where PyG's compiled neighbour sampling works (then NeighborLoader is the faster choice)."""
    try:
        import torch_geometric.typing as pyg_typing

        return bool(pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE)
    except Exception:  # noqa: BLE001
        return False
