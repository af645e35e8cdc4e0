from .device import resolve_device
from .seed import seed_everything

__all__ = ["resolve_device", "seed_everything"]
