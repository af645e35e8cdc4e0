"""Shared small synthetic data for the social tests (generated once per session)."""
import pytest


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory):
    from apps.social.synthetic import generate
    from apps.social.synthetic_io import write_all

    data = generate(n_posts=300, seed=1)
    written = write_all(data, tmp_path_factory.mktemp("social_small"))
    return data, written


@pytest.fixture(scope="module")
def one_thread():
    """The social models are small: one torch thread is faster than two (much faster on a busy box);
    the count is process-wide, so put it back for the tests that follow."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
