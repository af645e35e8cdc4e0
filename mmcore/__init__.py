"""mmcore: multimodal fusion and representation learning, with missing modalities as a first-class case."""
__version__ = "0.1.0"
