"""The social model: per-modality projections -> fusion with a multiplicative text x image branch ->
a 2-layer heterogeneous GNN -> a task head.  Switching modalities off gives the unimodal baselines
from the same code.

Post content (post task):

    t = W_t x_text            [P, d]     (rows without text are absent, not zero text)
    v = W_v x_image           [P, d]
    c = TFN([1; t] (x) [1; v]) [P, h]    mmcore.fusion.TensorFusion: unimodal terms + every t_i v_j
                                         product; a missing modality drops its terms exactly

Batches are mmcore ``MultimodalBatch`` es per node type (see ``dataset.py``): a modality's
``present`` mask decides, the placeholder rows are never read.

Graph (``use_graph``): node inputs ``post: c + W_s stats``, ``user: W_m meta`` (stub users: a
learned "unknown account" vector); two ``HeteroConv`` layers of mean-aggregating ``SAGEConv``
over every relation and its reverse (the second layer only over relations into the task's node
type, the only outputs the head reads), summed across relations, with residuals:

    h^(l+1)_v = h^l_v + ReLU( sum_r SAGE_r(h^l)_v )

Head: ``Linear([x0_seed ; h^2_seed]) -> classes``.  Shapes: seeds are the first ``batch_size``
nodes of the task's node type in the sampled subgraph.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from mmcore.data import MultimodalBatch
from mmcore.fusion import build_fusion

from .image import SmallCNN


@dataclass
class ModelConfig:
    task: str = "post"                 # post | user
    n_classes: int = 2
    text_dim: int = 512
    image_dim: int = 32                # frozen CNN features; 0 = run the CNN on pixels (image baseline)
    use_text: bool = False
    use_image: bool = False
    use_meta: bool = False
    use_graph: bool = False
    interaction: bool = True           # text x image multiplicative branch (else concatenation)
    proj_dim: int = 16
    hidden: int = 64
    dropout: float = 0.1
    input_dropout: float = 0.3          # on the text projection: fights memorising label noise

    def to_dict(self) -> dict:
        return asdict(self)


class SocialModel(nn.Module):
    def __init__(self, cfg: ModelConfig, edge_types: list | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        h, d = cfg.hidden, cfg.proj_dim
        self.cnn = SmallCNN() if cfg.use_image and cfg.image_dim == 0 else None
        image_in = self.cnn.feature_dim if self.cnn is not None else cfg.image_dim
        modal = {}
        if cfg.use_text:
            # dropout after the projection: as regularising as on the sparse input, ~60x cheaper
            self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.LayerNorm(d), nn.Dropout(cfg.input_dropout))
            modal["text"] = d
        if cfg.use_image:
            self.image_proj = nn.Sequential(nn.Linear(image_in, d), nn.LayerNorm(d))
            modal["image"] = d
        self.modal = modal
        # mmcore's fusions: TensorFusion for the text x image products, early (concatenation) without them
        self.fusion = build_fusion("tensor" if cfg.interaction else "early", modal, h) if (modal and cfg.task == "post") else None
        self.no_content = nn.Parameter(torch.zeros(h))        # a post with no usable content
        if cfg.task == "user" and cfg.use_text:
            self.user_text = nn.Sequential(nn.Linear(cfg.text_dim, h), nn.GELU(), nn.Dropout(cfg.input_dropout))
        if cfg.use_meta or cfg.use_graph:
            self.meta = nn.Sequential(nn.Linear(8, h), nn.GELU())
            self.unknown_user = nn.Parameter(torch.zeros(h))
        if cfg.use_graph:
            from torch_geometric.nn import HeteroConv, SAGEConv

            self.stats = nn.Linear(4, h)
            self.edge_types = [tuple(e) for e in edge_types]
            # the last layer only computes what the head reads: messages into the task's node type (the
            # other relations' outputs would be dead weights, which DDP also rejects as unused parameters)
            seed_type = "post" if cfg.task == "post" else "user"
            layers = [self.edge_types, [e for e in self.edge_types if e[2] == seed_type]]
            with warnings.catch_warnings():  # "node types not updated" is the point of the last layer
                warnings.filterwarnings("ignore", message="There exist node types")
                self.convs = nn.ModuleList(HeteroConv({e: SAGEConv(h, h, aggr="mean") for e in types}, aggr="sum")
                                           for types in layers)
        head_in = h * (2 if cfg.use_graph else 1)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(head_in, h), nn.GELU(), nn.Linear(h, cfg.n_classes))

    # ------------------------------------------------------------------ node inputs
    def post_content(self, post: MultimodalBatch) -> torch.Tensor:
        n = post.batch_size
        if self.fusion is None:
            return self.no_content.expand(n, -1)
        feats, present = {}, {}
        if "text" in self.modal:
            feats["text"], present["text"] = self.text_proj(post["text"]), post.present["text"]
        if "image" in self.modal:
            source = "pixels" if self.cnn is not None else "image"
            img = self.cnn(post["pixels"]) if self.cnn is not None else post["image"]
            feats["image"], present["image"] = self.image_proj(img), post.present[source]
        any_present = torch.stack(list(present.values())).any(0)
        fused = self.fusion(feats, present)
        return torch.where(any_present[:, None], fused, self.no_content.expand(n, -1))

    def user_input(self, user: MultimodalBatch) -> torch.Tensor:
        n = user.batch_size
        known = user.present["meta"][:, None]
        x = torch.zeros(n, self.cfg.hidden, device=user["meta"].device)
        if hasattr(self, "user_text"):  # an account without text contributes nothing here (masked == omitted)
            x = x + self.user_text(user["text"]) * user.present["text"][:, None].to(x.dtype)
        if self.cfg.use_meta or self.cfg.use_graph:
            meta = self.meta(user["meta"]) if self.cfg.use_meta else self.unknown_user.expand(n, -1)
            x = x + torch.where(known, meta, self.unknown_user.expand(n, -1))
        return x

    def forward(self, batch) -> torch.Tensor:
        x0 = {"post": self.post_content(batch.post), "user": self.user_input(batch.user)}
        seed_type = "post" if self.cfg.task == "post" else "user"
        b = batch.batch_size
        if not self.cfg.use_graph:
            return self.head(x0[seed_type][:b])
        x = {"post": x0["post"] + self.stats(batch.post["stats"]), "user": x0["user"]}
        edges = {e: ei for e, ei in batch.graph.edge_index.items() if e in self.edge_types}
        for conv in self.convs:
            out = conv(x, edges)
            x = {t: x[t] + torch.relu(out[t]) if t in out else x[t] for t in x}
        return self.head(torch.cat([x0[seed_type][:b], x[seed_type][:b]], -1))
