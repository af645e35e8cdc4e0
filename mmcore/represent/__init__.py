"""Representation learning: CCA family, deep CCA objectives, contrastive and memory-bank losses,
redundancy reduction, grounded word embeddings, zero-shot.  Import the submodules directly
(``from mmcore.represent.cca import LinearCCA``); this package imports nothing heavy on purpose.
See docs/represent.md."""
