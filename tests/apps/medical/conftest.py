"""Shared fixtures of the medical tests."""
import pytest


@pytest.fixture(scope="session")
def model():
    """The shipped model bundle, loaded once for every test module that analyses studies."""
    import torch

    from apps.medical.analyze import load_model

    torch.set_num_threads(1)
    return load_model()
