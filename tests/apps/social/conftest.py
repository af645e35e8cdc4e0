"""Shared small synthetic data for the social tests (generated once per session)."""
import pytest


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory):
    from apps.social.synthetic import generate
    from apps.social.synthetic_io import write_all

    data = generate(n_posts=300, seed=1)
    written = write_all(data, tmp_path_factory.mktemp("social_small"))
    return data, written
