"""Worker pools, local and Ray: every item once, a dead worker costing its item only, errors as themselves."""

import os
import signal
import time
from pathlib import Path

import pytest

from toyland.parallel import WorkerLost, map_ordered, map_unordered


class Doubler:
    """Doubles numbers; kills its own process the first time it meets ``die_on`` (a marker file remembers)."""

    def __init__(self, marker: str | None = None, die_on: int = -1, fail_on: int = -1):
        self.marker, self.die_on, self.fail_on = marker, die_on, fail_on

    def double(self, x: int) -> tuple[int, int]:
        if x == self.fail_on:
            raise ValueError(f"item {x} is bad")
        if x == self.die_on and self.marker and not Path(self.marker).exists():
            Path(self.marker).touch()
            time.sleep(0.2)  # others are running meanwhile
            os.kill(os.getpid(), signal.SIGKILL)
        return 2 * x, os.getpid()


def broken_factory():
    raise FileNotFoundError("no such toy set 'toyz'")


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import the test module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(params=["local", "ray"])
def launcher(request):
    if request.param == "ray":
        request.getfixturevalue("ray_instance")
    return request.param


def test_every_item_once_and_a_killed_worker_costs_its_item_only(tmp_path, launcher):
    items = list(range(12))
    with pytest.warns(RuntimeWarning, match="worker process died") if launcher == "local" else _nothing():
        out = list(map_unordered(items, Doubler, (str(tmp_path / "died"), 5), "double", workers=2, launcher=launcher))
    assert (tmp_path / "died").exists()  # a worker really died
    assert sorted(i for i, _ in out) == items  # each index once
    assert all(result[0] == 2 * items[i] for i, result in out)


def test_ordered_results_come_in_order_from_an_endless_stream_despite_a_killed_worker(tmp_path, launcher):
    import itertools

    out = []
    with pytest.warns(RuntimeWarning, match="worker process died") if launcher == "local" else _nothing():
        for value, _ in map_ordered(itertools.count(), Doubler, (str(tmp_path / "died"), 4), "double", workers=2,
                                    launcher=launcher):
            out.append(value)
            if len(out) == 10:
                break
    assert (tmp_path / "died").exists() and out == [2 * i for i in range(10)]


def test_an_error_in_an_item_or_in_building_the_worker_reaches_the_caller_as_itself(launcher):
    with pytest.raises(ValueError, match="item 3 is bad"):
        list(map_unordered(list(range(6)), Doubler, (None, -1, 3), "double", workers=2, launcher=launcher))
    with pytest.raises(FileNotFoundError, match="toyz"):
        list(map_unordered([1, 2], broken_factory, (), "double", workers=2, launcher=launcher))


def test_a_worker_that_always_dies_ends_with_a_clear_error(tmp_path):
    with pytest.raises(WorkerLost, match="died 2 times running item 1"), pytest.warns(RuntimeWarning):
        list(map_unordered([0, 1, 2, 3], AlwaysDies, (), "double", workers=1, retries=1))


def test_sporadic_deaths_of_different_items_do_not_add_up(tmp_path):
    items = list(range(8))
    with pytest.warns(RuntimeWarning):  # three items each kill their worker once, within two reruns each
        out = list(map_unordered(items, DiesOncePerItem, (str(tmp_path),), "double", workers=2, retries=2))
    assert sorted(i for i, _ in out) == items


class DiesOncePerItem(Doubler):
    def __init__(self, folder):
        self.folder = Path(folder)

    def double(self, x):
        marker = self.folder / f"died_{x}"
        if x in (1, 4, 6) and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return 2 * x, os.getpid()


class AlwaysDies(Doubler):
    def double(self, x):
        if x == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return 2 * x, os.getpid()


def test_bad_launcher_settings_are_named_before_any_work():
    with pytest.raises(ValueError, match="launcher='slurm'"):
        list(map_unordered([1], Doubler, (), "double", workers=1, launcher="slurm"))
    with pytest.raises(ValueError, match="needs launcher=ray"):
        list(map_unordered([1], Doubler, (), "double", workers=1, address="10.0.0.1:6379"))
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match="HOST:PORT"):
        list(map_unordered([1], Doubler, (), "double", workers=1, launcher="ray", address="nowhere"))


def test_an_unreachable_ray_cluster_fails_at_once_with_its_address():
    pytest.importorskip("ray")
    t = time.perf_counter()
    with pytest.raises(ConnectionError, match="127.0.0.1:9"):
        list(map_unordered([1], Doubler, (), "double", workers=1, launcher="ray", address="127.0.0.1:9"))
    assert time.perf_counter() - t < 10


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
