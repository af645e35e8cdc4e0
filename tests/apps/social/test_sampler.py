"""The pure-torch neighbour sampler against the graph it samples and PyG's k_hop_subgraph."""
import pytest
import torch
from torch_geometric.utils import k_hop_subgraph

from apps.social.sampler import NeighborSampler


def _graph(seed=0):
    g = torch.Generator().manual_seed(seed)
    n_user, n_post = 40, 60
    follows = torch.randint(0, n_user, (2, 200), generator=g)
    authored = torch.stack([torch.randint(0, n_user, (n_post,), generator=g), torch.arange(n_post)])
    reposts = torch.stack([torch.randint(0, n_user, (150,), generator=g), torch.randint(0, n_post, (150,), generator=g)])
    edges = {("user", "follows", "user"): follows, ("user", "authored", "post"): authored,
             ("user", "reposts", "post"): reposts, ("post", "rev_authored", "user"): authored.flip(0),
             ("post", "rev_reposts", "user"): reposts.flip(0)}
    return edges, {"user": n_user, "post": n_post}


def test_sampled_edges_exist_fanout_respected_seeds_first():
    edges, nodes = _graph()
    sampler = NeighborSampler(edges, nodes, [3, 2])
    seeds = torch.tensor([5, 17, 3, 42])
    sub = sampler.sample("post", seeds, torch.Generator().manual_seed(1))
    assert torch.equal(sub.n_id["post"][:4], seeds) and sub.batch_size == 4
    for ids in sub.n_id.values():
        assert len(torch.unique(ids)) == len(ids)
    for key, index in sub.edge_index.items():
        real = {tuple(e) for e in edges[key].t().tolist()}
        glob = torch.stack([sub.n_id[key[0]][index[0]], sub.n_id[key[2]][index[1]]])
        assert {tuple(e) for e in glob.t().tolist()} <= real
        # per destination node: at most fanout sampled, and exactly min(deg, fanout) for the seeds
        if key[2] == "post":
            for j, s in enumerate(seeds.tolist()):
                deg = int((edges[key][1] == s).sum())
                assert int((index[1] == j).sum()) == min(deg, 3)


def test_keep_all_matches_k_hop_subgraph():
    n = 50
    g = torch.Generator().manual_seed(3)
    edge_index = torch.randint(0, n, (2, 120), generator=g)
    edge_index = torch.unique(edge_index, dim=1)
    sampler = NeighborSampler({("v", "e", "v"): edge_index}, {"v": n}, [-1, -1])
    seeds = torch.tensor([0, 7])
    sub = sampler.sample("v", seeds)
    subset, _, _, _ = k_hop_subgraph(seeds, 2, edge_index, num_nodes=n, flow="source_to_target")
    assert set(sub.n_id["v"].tolist()) == set(subset.tolist())


def test_sampling_is_uniform_over_neighbours():
    # node 0 has 10 in-neighbours; each should be picked ~ 3/10 of the time
    edge_index = torch.stack([torch.arange(1, 11), torch.zeros(10, dtype=torch.long)])
    sampler = NeighborSampler({("v", "e", "v"): edge_index}, {"v": 11}, [3])
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(11)
    for _ in range(2000):
        sub = sampler.sample("v", torch.tensor([0]), gen)
        counts[sub.n_id["v"][1:]] += 1
    freq = counts[1:] / 2000
    assert torch.allclose(freq, torch.full((10,), 0.3), atol=0.05)


def test_one_place_picks_the_sampler_and_logs_it(monkeypatch, caplog):
    from apps.social import sampler as S

    edges, nodes = _graph()
    monkeypatch.setattr(S, "pyg_lib_available", lambda: False)
    with caplog.at_level("INFO", logger="apps.social.sampler"):
        chosen = S.make_sampler(edges, nodes, [3])
    assert type(chosen) is S.NeighborSampler and "pure-torch sampler" in caplog.text
    with pytest.raises(ImportError, match="pyg-lib"):
        S.make_sampler(edges, nodes, [3], backend="pyg")
    with pytest.raises(ValueError, match="unknown sampler backend"):
        S.make_sampler(edges, nodes, [3], backend="dgl")

    monkeypatch.setattr(S, "pyg_lib_available", lambda: True)
    caplog.clear()
    with caplog.at_level("INFO", logger="apps.social.sampler"):
        chosen = S.make_sampler(edges, nodes, [3])
    assert isinstance(chosen, S.PyGSampler) and "PyG NeighborLoader sampler" in caplog.text
    assert S.sampler_backend(chosen) == "pyg"
    assert type(S.make_sampler(edges, nodes, [3], backend="torch")) is S.NeighborSampler
    assert type(S.make_sampler(edges, nodes, [])) is S.NeighborSampler  # no hops: nothing to sample


def test_pyg_sampler_path_through_sample_from_nodes(monkeypatch):
    """pyg-lib is not installed here, so PyG's compiled routine is replaced by a stand-in that returns
    a HeteroSamplerOutput in PyG's format (global ids per type with seeds first; local source ids in
    ``row``, local destination ids in ``col``); everything else is PyG's code and ours."""
    from torch_geometric.sampler import HeteroSamplerOutput
    from torch_geometric.sampler import NeighborSampler as PyGNeighborSampler

    from apps.social import sampler as S

    edges, nodes = _graph()
    if not S.pyg_lib_available():
        with pytest.raises(ImportError):  # the real thing, as it fails on this machine
            S.PyGSampler(edges, nodes, [3]).sample("post", torch.tensor([1, 2]))
    reference = NeighborSampler(edges, nodes, [3])

    def stand_in(self, seed, seed_time=None, **kwargs):
        ((seed_type, ids),) = seed.items()
        sub = reference.sample(seed_type, ids, torch.Generator().manual_seed(0))
        return HeteroSamplerOutput(node=sub.n_id, row={k: v[0] for k, v in sub.edge_index.items()},
                                   col={k: v[1] for k, v in sub.edge_index.items()},
                                   edge={k: None for k in sub.edge_index})

    monkeypatch.setattr(PyGNeighborSampler, "_sample", stand_in)
    seeds = torch.tensor([5, 17, 3, 42])
    sub = S.PyGSampler(edges, nodes, [3]).sample("post", seeds)
    assert sub.batch_size == 4 and torch.equal(sub.n_id["post"][:4], seeds)
    expected = reference.sample("post", seeds, torch.Generator().manual_seed(0))
    for key, index in sub.edge_index.items():
        assert torch.equal(index, expected.edge_index[key]), key
        glob = torch.stack([sub.n_id[key[0]][index[0]], sub.n_id[key[2]][index[1]]])
        assert {tuple(e) for e in glob.t().tolist()} <= {tuple(e) for e in edges[key].t().tolist()}
    with pytest.raises(ValueError, match="unique"):
        S.PyGSampler(edges, nodes, [3]).sample("post", torch.tensor([1, 1]))
