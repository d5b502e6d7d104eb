"""The executor: local (in-process and processes) and Dask give the same results; a task that
raises comes back with its task and the others are kept; bad addresses are one clear line."""

from __future__ import annotations

import pytest

from sim.studies.executor import DaskExecutor, ExecutorError, LocalExecutor, make_executor
from tests.support.servers import refused_port


def square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x * x


def check_results(pairs: list[tuple[int, object]], n: int = 8) -> None:
    results = dict(pairs)
    assert len(pairs) == n and sorted(results) == list(range(n))
    assert isinstance(results[3], ValueError) and "three" in str(results[3])
    assert {k: v for k, v in results.items() if k != 3} == {k: k * k for k in range(n) if k != 3}


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_executor_keeps_the_other_results_when_one_task_raises(jobs: int) -> None:
    with LocalExecutor(jobs) as ex:
        assert ex.workers == jobs
        check_results(list(ex.map_unordered(square_or_fail, range(8))))


def test_local_executor_with_no_tasks_yields_nothing() -> None:
    with LocalExecutor(2) as ex:
        assert list(ex.map_unordered(square_or_fail, [])) == []


@pytest.mark.parametrize("n", [8, 100])  # 100 tasks go in chunks of several runs
def test_dask_local_cluster_gives_the_same_results(n: int) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  protocol="tcp", host="127.0.0.1", scheduler_port=0,
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address.removeprefix("tcp://")
        with make_executor(f"dask://{address}") as ex:
            assert isinstance(ex, DaskExecutor) and ex.workers == 2
            check_results(list(ex.map_unordered(square_or_fail, range(n))), n)


@pytest.mark.parametrize(("spec", "message"), [
    ("spark://x:1", "unknown executor"),
    ("dask://nohost", "expected dask://HOST:PORT"),
    ("dask://127.0.0.1:port", "expected dask://HOST:PORT"),
])
def test_bad_executor_specs_are_named(spec: str, message: str) -> None:
    with pytest.raises(ExecutorError, match=message):
        make_executor(spec)


def test_unreachable_dask_scheduler_fails_fast_with_one_line() -> None:
    with refused_port() as port, pytest.raises(ExecutorError) as info:
        make_executor(f"dask://127.0.0.1:{port}")
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text and "cannot reach" in text and "\n" not in text


def test_jobs_must_be_positive() -> None:
    with pytest.raises(ExecutorError, match="at least 1"):
        make_executor("local", 0)
