import numpy as np
import pytest

import toyland  # noqa: F401  (chooses the headless GL backend before mujoco loads)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
