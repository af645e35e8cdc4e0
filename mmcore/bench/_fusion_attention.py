"""The attention timing of `mm bench fusion`: our cross-modal attention layer (SDPA, each
source's K/V projected once) against the MulT layout on ``nn.MultiheadAttention(need_weights=True)``,
forward + backward on identical inputs.  Run it with ``mm bench fusion --attention-only``."""
from __future__ import annotations

import time

import torch


class MHACrossModalBaseline(torch.nn.Module):
    """The MulT layout on ``nn.MultiheadAttention``: one module per ordered (target, source) pair,
    called with ``need_weights=True`` (the slow path that materialises head-averaged weights);
    streams averaged per target, as in :class:`~mmcore.fusion.cross_modal.CrossModalLayer`."""

    def __init__(self, modalities, dim: int, heads: int) -> None:
        super().__init__()
        self.pairs = [(t, s) for t in modalities for s in modalities if s != t]
        self.norm_q = torch.nn.ModuleDict({f"{t}<{s}": torch.nn.LayerNorm(dim) for t, s in self.pairs})
        self.norm_kv = torch.nn.ModuleDict({f"{t}<{s}": torch.nn.LayerNorm(dim) for t, s in self.pairs})
        self.attn = torch.nn.ModuleDict({f"{t}<{s}": torch.nn.MultiheadAttention(dim, heads, batch_first=True)
                                         for t, s in self.pairs})

    def forward(self, h: dict) -> dict:
        streams: dict = {t: [] for t in h}
        for t, s in self.pairs:
            key = f"{t}<{s}"
            q, kv = self.norm_q[key](h[t]), self.norm_kv[key](h[s])
            out, _weights = self.attn[key](q, kv, kv, need_weights=True)
            streams[t].append(out)
        return {t: h[t] + torch.stack(v).mean(0) for t, v in streams.items()}


def time_attention(batch: int = 32, tokens: int = 128, width: int = 256, heads: int = 8, n_modalities: int = 3,
                   repeats: int = 5, seed: int = 0) -> dict:
    """Forward+backward time of our cross-modal attention layer vs the MulT layout on
    ``nn.MultiheadAttention(need_weights=True)``, identical shapes, timed alternately (medians)."""
    from ..fusion.cross_modal import CrossModalLayer

    torch.manual_seed(seed)
    names = [f"m{i}" for i in range(n_modalities)]
    ours = CrossModalLayer(names, width, heads, mlp_ratio=0)
    base = MHACrossModalBaseline(names, width, heads)
    h = {m: torch.randn(batch, tokens, width, requires_grad=True) for m in names}
    present = {m: torch.ones(batch, dtype=torch.bool) for m in names}
    valid = {m: None for m in names}

    def run_ours():
        out = ours(h, present, valid)
        sum(v.sum() for v in out.values()).backward()

    def run_base():
        out = base(h)
        sum(v.sum() for v in out.values()).backward()

    # the same comparison for a single pair with identical projections: SDPA vs the slow path alone
    from ..fusion._blocks import Attention

    one_ours, one_base = Attention(width, heads), torch.nn.MultiheadAttention(width, heads, batch_first=True)
    q, kv = h[names[0]], h[names[1]]

    def pair_ours():
        one_ours(q, kv).sum().backward()

    def pair_base():
        one_base(q, kv, kv, need_weights=True)[0].sum().backward()

    fns = (run_ours, run_base, pair_ours, pair_base)
    for fn in fns:                                          # one warm-up each (allocations, kernels)
        fn()
    t_ours, t_base, p_ours, p_base = times = [], [], [], []
    for _ in range(max(1, repeats)):                       # alternate so load drifts hit both alike
        for fn, acc in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    result = {
        "shape": {"batch": batch, "modalities": n_modalities, "tokens": tokens, "width": width, "heads": heads},
        "threads": torch.get_num_threads(), "repeats": repeats,
        "ours_fwd_bwd_s": med(t_ours), "mha_need_weights_fwd_bwd_s": med(t_base),
        "speedup": med(t_base) / med(t_ours),
        "pair_sdpa_fwd_bwd_s": med(p_ours), "pair_mha_need_weights_fwd_bwd_s": med(p_base),
        "pair_speedup": med(p_base) / med(p_ours),
        "ours_params": sum(p.numel() for p in ours.parameters()),
        "mha_params": sum(p.numel() for p in base.parameters()),
    }
    print(f"[attention] B={batch} M={n_modalities} T={tokens} D={width} H={heads}, threads={result['threads']}: "
          f"ours {result['ours_fwd_bwd_s'] * 1e3:.0f} ms, nn.MultiheadAttention(need_weights=True) "
          f"{result['mha_need_weights_fwd_bwd_s'] * 1e3:.0f} ms fwd+bwd (median of {repeats}) -> "
          f"{result['speedup']:.2f}x faster", flush=True)
    print(f"[attention] one pair, identical projections: SDPA {result['pair_sdpa_fwd_bwd_s'] * 1e3:.0f} ms vs "
          f"need_weights=True {result['pair_mha_need_weights_fwd_bwd_s'] * 1e3:.0f} ms -> "
          f"{result['pair_speedup']:.2f}x (the kernel alone; the layer also projects each source's K/V once, not per pair)",
          flush=True)
    return result
