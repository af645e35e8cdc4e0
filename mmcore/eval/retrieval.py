"""Cross-modal retrieval metrics: Recall@K and median rank, in both directions.

For queries Q [N, D] and a gallery G [M, D] the similarity is S = Q Gᵀ (pass unit vectors for
cosine).  A query's relevant gallery items are by default the one with its own index (paired data,
N = M); ``query_ids``/``gallery_ids`` instead mark as relevant every item with the same id (e.g.
identical captions, so duplicates are not counted as misses).  The rank of a query is 1 + the
number of gallery items scored strictly higher than its best relevant one; ties therefore
count in the query's favour only when exactly equal.

    R@K          fraction of queries whose rank ≤ K
    median rank  median over queries (1 is perfect)
    chance R@1   expected R@1 of random scores = mean over queries of (#relevant / M)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def ranks(similarity: torch.Tensor, relevant: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of the best relevant gallery item per query. [N, M] (+ [N, M] bool) -> [N]."""
    if similarity.dim() != 2:
        raise ValueError(f"similarity must be [N, M], got {tuple(similarity.shape)}")
    if relevant is None:
        if similarity.shape[0] != similarity.shape[1]:
            raise ValueError("paired retrieval needs a square similarity; pass ids for N != M")
        relevant = torch.eye(similarity.shape[0], dtype=torch.bool, device=similarity.device)
    if not bool(relevant.any(1).all()):
        raise ValueError("every query needs at least one relevant gallery item")
    best = similarity.masked_fill(~relevant, float("-inf")).max(1, keepdim=True).values
    return (similarity > best).sum(1) + 1


def _relevance(query_ids: Sequence | None, gallery_ids: Sequence | None) -> torch.Tensor | None:
    if query_ids is None and gallery_ids is None:
        return None
    if query_ids is None or gallery_ids is None:
        raise ValueError("pass both query_ids and gallery_ids, or neither")
    codes: dict = {}
    q = torch.tensor([codes.setdefault(i, len(codes)) for i in query_ids])
    g = torch.tensor([codes.setdefault(i, len(codes)) for i in gallery_ids])
    return q[:, None] == g[None, :]


def retrieval_metrics(similarity: torch.Tensor, ks: Sequence[int] = (1, 5, 10), query_ids: Sequence | None = None,
                      gallery_ids: Sequence | None = None) -> dict[str, float]:
    relevant = _relevance(query_ids, gallery_ids)
    r = ranks(similarity, relevant).float()
    out = {f"R@{k}": (r <= k).float().mean().item() for k in ks}
    out["median_rank"] = r.median().item()
    m = similarity.shape[1]
    out["chance_R@1"] = (relevant.sum(1).float().mean().item() / m) if relevant is not None else 1.0 / m
    return out


def cross_modal_retrieval(a: torch.Tensor, b: torch.Tensor, ks: Sequence[int] = (1, 5, 10),
                          a_ids: Sequence | None = None, b_ids: Sequence | None = None) -> dict[str, float]:
    """Both directions for paired embeddings a [N, D], b [N, D]: keys 'a2b_R@1', ..., 'b2a_median_rank'."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"paired retrieval needs the same number of rows: {a.shape[0]} vs {b.shape[0]}")
    sim = a @ b.T
    out = {f"a2b_{k}": v for k, v in retrieval_metrics(sim, ks, a_ids, b_ids).items()}
    out.update({f"b2a_{k}": v for k, v in retrieval_metrics(sim.T, ks, b_ids, a_ids).items()})
    return out
