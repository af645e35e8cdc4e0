"""Heterogeneous neighbour sampling: PyG's compiled sampler (what ``NeighborLoader`` runs) where
pyg-lib or torch-sparse imports, otherwise a tested pure-torch sampler (neither package installs
from PyPI).  :func:`make_sampler` is the one place that chooses, and logs the choice.

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

import logging
import threading
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


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
        self._local = {t: torch.full((n,), -1, dtype=torch.long) for t, n in self.num_nodes.items()}
        self._touched: dict = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # DataLoader workers may pickle the collate_fn: locks do not pickle
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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
        with self._lock:  # the global->local maps are reused between calls (no O(graph) allocation per batch)
            try:
                return self._sample(seed_type, seeds.long().flatten(), generator)
            finally:
                for t, parts in self._touched.items():
                    for ids in parts:
                        self._local[t][ids] = -1
                self._touched = {}

    def _sample(self, seed_type: str, seeds: torch.Tensor, generator) -> SampledGraph:
        local = self._local
        nodes = {t: [] for t in self.num_nodes}
        self._touched = nodes
        count = {t: 0 for t in self.num_nodes}

        def add(node_type: str, ids: torch.Tensor) -> torch.Tensor:
            ids = torch.unique(ids)  # sorted unique; order within a hop does not matter for a GNN
            new = ids[local[node_type][ids] < 0]
            local[node_type][new] = torch.arange(count[node_type], count[node_type] + len(new))
            count[node_type] += len(new)
            nodes[node_type].append(new)
            return new

        if len(torch.unique(seeds)) != len(seeds):
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


class PyGSampler:
    """PyG's compiled sampler (the one ``NeighborLoader`` calls for every batch) behind the same
    ``sample`` / ``full`` interface as :class:`NeighborSampler`.

    Our Trainer batches seed indices itself (``DataLoader`` + ``collate_fn``), so instead of a
    ``NeighborLoader`` object the collate calls its sampler directly: same sampling code, same
    semantics (``fanout[h]`` incoming edges per node and edge type, ``-1`` = all, seeds first).
    It draws from torch's global generator (seed it with ``torch.manual_seed``)."""

    def __init__(self, edge_index: dict, num_nodes: dict, fanouts: list[int]) -> None:
        from torch_geometric.data import HeteroData
        from torch_geometric.sampler import NeighborSampler as PyGNeighborSampler

        self.num_nodes, self.fanouts = dict(num_nodes), list(fanouts)
        self.edge_types = [tuple(k) for k in edge_index]
        data = HeteroData()
        for node_type, n in self.num_nodes.items():
            data[node_type].num_nodes = n
        for key, index in edge_index.items():
            data[key].edge_index = index
        self.inner = PyGNeighborSampler(data, num_neighbors=self.fanouts)

    def sample(self, seed_type: str, seeds: torch.Tensor, generator: torch.Generator | None = None) -> SampledGraph:
        from torch_geometric.sampler import NodeSamplerInput

        seeds = seeds.long().flatten()
        if len(torch.unique(seeds)) != len(seeds):
            raise ValueError("seed nodes must be unique")
        out = self.inner.sample_from_nodes(NodeSamplerInput(input_id=None, node=seeds, input_type=seed_type))
        return from_pyg_output(out, seed_type, len(seeds), self.num_nodes, self.edge_types)

    def full(self, seed_type: str, edge_index: dict) -> SampledGraph:
        n_id = {t: torch.arange(n) for t, n in self.num_nodes.items()}
        return SampledGraph(n_id, dict(edge_index), seed_type, self.num_nodes[seed_type])


def from_pyg_output(out, seed_type: str, batch_size: int, num_nodes: dict, edge_types: list) -> SampledGraph:
    """A ``HeteroSamplerOutput`` (node: global ids per type, seeds first; row/col: local source and
    destination per edge type) as a :class:`SampledGraph`."""
    empty = torch.empty(0, dtype=torch.long)
    n_id = {t: out.node.get(t, empty).long() for t in num_nodes}
    edge_index = {k: torch.stack([out.row[k].long(), out.col[k].long()]) if k in out.row else torch.empty(2, 0, dtype=torch.long)
                  for k in edge_types}
    return SampledGraph(n_id, edge_index, seed_type, batch_size)


def make_sampler(edge_index: dict, num_nodes: dict, fanouts: list[int], backend: str = "auto"):
    """The one place that picks the sampler: PyG's (NeighborLoader's) where pyg-lib or torch-sparse
    imports, the pure-torch :class:`NeighborSampler` otherwise.  ``backend``: auto | pyg | torch."""
    if backend not in ("auto", "pyg", "torch"):
        raise ValueError(f"unknown sampler backend '{backend}' (auto, pyg, torch)")
    available = pyg_lib_available()
    if backend == "pyg" and not available:
        raise ImportError("sampler backend 'pyg' needs pyg-lib or torch-sparse (neither imports here); "
                          "use backend 'auto' or 'torch'")
    # no hops (a model without the graph): nothing to sample, the seeds are the batch
    use_pyg = bool(fanouts) and (backend == "pyg" or (backend == "auto" and available))
    sampler = PyGSampler(edge_index, num_nodes, fanouts) if use_pyg else NeighborSampler(edge_index, num_nodes, fanouts)
    if fanouts:  # a full-graph pass samples nothing: no need to say which sampler
        why = "pyg-lib/torch-sparse available" if available else "pyg-lib/torch-sparse not installed"
        log.info("neighbour sampling: %s (%s)", "PyG NeighborLoader sampler" if use_pyg else "pure-torch sampler", why)
    return sampler


def sampler_backend(sampler) -> str:
    return "pyg" if isinstance(sampler, PyGSampler) else "torch"

