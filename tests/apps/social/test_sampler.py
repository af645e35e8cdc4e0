"""The pure-torch neighbour sampler against the graph it samples and PyG's k_hop_subgraph."""
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
    for t, ids in sub.n_id.items():
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
