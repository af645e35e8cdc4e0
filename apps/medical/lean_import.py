"""Import MONAI without the heavy optional packages its package ``__init__`` pulls in eagerly.

``import monai`` (any ``monai.*``) runs ``load_submodules`` over the whole package, twice, and every
module that has an optional dependency installed imports it: transformers (``Transchex``), sympy
and ``torch._dynamo`` (through transformers), matplotlib, pandas, scikit-learn, scikit-image,
``scipy.signal``/``scipy.stats``. None of them is used by `mm medical analyze`; together they were
~4 s of a ~9 s MONAI import (bytecode cached; ~20 s without). :func:`import_monai_lean` hides them
*only while MONAI imports* (MONAI then treats them as absent, through its own ``optional_import``:
the MONAI features that need them raise ``OptionalImportError`` in this process) and removes the
hook at once, so the rest of the process imports them normally.

Used by the one-shot CLI (`mm medical analyze`); a no-op when MONAI is already imported, or with
``MM_MEDICAL_FULL_MONAI=1``.
"""
from __future__ import annotations

import importlib.abc
import os
import sys

DEFERRED = ("transformers", "sympy", "torch._dynamo", "matplotlib", "pandas", "sklearn", "skimage",
            "scipy.signal", "scipy.stats")


class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == d or name.startswith(d + ".") for d in DEFERRED):
            raise ModuleNotFoundError(f"No module named {name!r} (not needed while importing MONAI for analyze)",
                                      name=name)
        return None


def import_monai_lean() -> bool:
    """Import the MONAI parts the analyze path uses with :data:`DEFERRED` hidden; True when it did."""
    if "monai" in sys.modules or os.environ.get("MM_MEDICAL_FULL_MONAI") == "1":
        return False
    hook = _Hide()
    sys.meta_path.insert(0, hook)
    try:
        import monai  # noqa: F401
        import monai.data  # noqa: F401
        import monai.inferers  # noqa: F401
        import monai.networks.blocks  # noqa: F401
        import monai.transforms  # noqa: F401
    finally:
        sys.meta_path.remove(hook)
    return True
