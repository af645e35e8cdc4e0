"""Representation tests run single-threaded: tiny matrices, and a shared 2-core box where
oversubscribed intra-op threads made them ~30x slower."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
