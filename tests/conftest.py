import numpy as np
import pytest

import toyland  # noqa: F401  (chooses the headless GL backend before mujoco loads)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def lift_demos(tmp_path_factory):
    """Three kept expert episodes of Lift at 48x48 (seeds from 0), shared by data and training tests."""
    from toyland.data.collect import collect

    root = tmp_path_factory.mktemp("demos") / "lift"
    collect({"task": "lift", "image_size": 48}, root, episodes=3, seed=0, workers=1, progress=False)
    return root
