"""A small image CNN trained here (no pretrained vision weights install offline), and the slot for a
user's own local model.

``SmallCNN``: [B, 3, 32, 32] uint8 or float -> [B, feature_dim]; a stride-2 stem (3->8) then two
conv blocks (8->16->feature_dim, 3x3, BN, ReLU, 2x2 max-pool) and global average pooling.
~0.65M multiply-adds per 32x32 image (4x fewer than three full-resolution blocks).

``LocalVisionModel``: wraps any ``torch.nn.Module`` the user loads from disk (TorchScript file
or a state dict through :func:`mmcore.train.load_weights`) that maps [B, 3, H, W] floats in [0, 1]
to [B, D]; use it in place of SmallCNN features with ``--image-model PATH``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

MEAN, STD = 127.5, 64.0


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] or [B, 3, H, W] -> standardised float [B, 3, H, W]."""
    if pixels.dim() == 4 and pixels.shape[-1] == 3:
        pixels = pixels.permute(0, 3, 1, 2)
    return (pixels.float() - MEAN) / STD


class SmallCNN(nn.Module):
    def __init__(self, feature_dim: int = 32) -> None:
        super().__init__()
        blocks = [nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()]
        for cin, cout in ((8, 16), (16, feature_dim)):
            blocks += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*blocks)
        self.feature_dim = feature_dim

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = to_float(pixels) if pixels.dtype == torch.uint8 else pixels
        return self.body(x).mean((2, 3))


@torch.no_grad()
def image_features(cnn: nn.Module, pixels: np.ndarray, present: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Frozen features for every present image ([N, D] float32; absent rows stay zero and masked)."""
    cnn.eval()
    dim = getattr(cnn, "feature_dim", None) or int(cnn(torch.zeros(1, 3, 32, 32)).shape[-1])
    out = np.zeros((len(pixels), dim), np.float32)
    idx = np.flatnonzero(present)
    for s in range(0, len(idx), batch_size):
        rows = idx[s:s + batch_size]
        out[rows] = cnn(torch.as_tensor(pixels[rows])).numpy()
    return out


class LocalVisionModel(nn.Module):
    """A user's own image model from a local file (no hub download): TorchScript or safetensors."""

    def __init__(self, path: str, module: nn.Module | None = None) -> None:
        super().__init__()
        if module is not None:
            from mmcore.train import load_weights

            self.inner = load_weights(module, path)
        else:
            self.inner = torch.jit.load(path, map_location="cpu")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float() / 255.0 if pixels.dtype == torch.uint8 else pixels
        return self.inner(x)
