"""The Ray executor (``executor: {kind: ray}``) on a local Ray of 2 CPUs: 6 JointNAS trials on 2 workers x 1 thread;
one worker killed (SIGKILL) mid-trial is retried by Ray; every result is in its ``trials/<id>/`` exactly once and
equal to a sequential run's. A latency table built on the node that offers a device's resource keeps that node's
fingerprint; a resource no node offers is one line. Also: the config accepts the kind and its options."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
sys.path.insert(0, str(TESTS))
import ray_trials  # noqa: E402

N = 6
KILL = "t002"
TARGET = "fbnas_test_target"  # the custom resource that names a target device's node
PROXY = {"train_images": 96, "val_images": 48, "epochs": 2, "bn_images": 96}  # a smaller proxy: seconds per trial


@pytest.fixture(scope="module")
def local_ray():
    os.environ["FBNAS_TEST_KILL"] = KILL
    ray.init(num_cpus=2, resources={TARGET: 1}, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]),
                                       "FBNAS_TEST_KILL": KILL, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def _comparable(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k != "wall_s"}
    out["metrics"] = [{k: v for k, v in r.items() if k not in ("elapsed_s", "images_per_s")} for r in result["metrics"]]
    return out


def _kill_when_announced(marker: Path, killed: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        if marker.exists() and marker.read_text().strip():
            pid = int(marker.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)


def test_ray_retries_a_killed_worker_and_keeps_every_result_once(local_ray, tmp_path):
    from fbnas.bench.ddp import smoke_trial_tasks
    from fbnas.runs import RunFolder
    from fbnas.search.executors import SequentialExecutor, make_executor
    from fbnas.search.jointnas.trials import run_trial

    tasks = smoke_trial_tasks(tmp_path / "ray", N, threads=1, proxy=PROXY)
    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_when_announced,
                               args=(tmp_path / "ray" / "trials" / "kill-me.pid", killed, stop), daemon=True)
    watcher.start()
    seen: list[int] = []
    try:
        with make_executor("ray", workers=2, threads=1, max_retries=2) as ex:
            results = ex.map(ray_trials.killable_trial, tasks, lambda i, r: seen.append(i))
    finally:
        stop.set()
    assert killed, "the worker running the trial was never killed"
    assert sorted(seen) == list(range(N))  # on_result once per trial
    attempts = (tmp_path / "ray" / "trials" / f"{KILL}.attempts").read_text().split()
    assert len(attempts) == 2 and attempts[0] == str(killed[0]) != attempts[1]  # retried, in another worker
    for task, result in zip(tasks, results, strict=True):
        folder = RunFolder(task.trial_dir, "trial")
        assert folder.read_result() == result and result["id"] == task.trial_id
        assert len(list(folder.path.glob("result*.json"))) == 1
    seq_tasks = smoke_trial_tasks(tmp_path / "seq", N, threads=1, proxy=PROXY)
    with SequentialExecutor(threads=1) as ex:
        sequential = ex.map(run_trial, seq_tasks)
    assert [_comparable(r) for r in results] == [_comparable(r) for r in sequential]
    # negative control: the comparison tells trials apart
    assert _comparable(results[0]) != _comparable(results[1])


def test_ray_executor_config(local_ray):
    from fbnas.errors import FbnasError
    from fbnas.search.executors import RayExecutor
    from fbnas.search.jointnas.config import ExecutorSection

    section = ExecutorSection.parse({"kind": "ray", "address": "auto", "workers": 4, "threads": 2, "max_retries": 1},
                                    "cfg")
    assert (section.kind, section.address, section.max_retries) == ("ray", "auto", 1)
    with pytest.raises(FbnasError, match="max_retries"):
        RayExecutor(2, 1, "local", -1)


def test_lut_build_on_the_node_offering_the_resource(local_ray, tmp_path):
    from test_lut_core import tiny_space

    from fbnas.errors import FbnasError
    from fbnas.lut.measure import this_device
    from fbnas.lut.remote import build_on_node
    from fbnas.lut.store import LutStore
    space = tiny_space()
    db = tmp_path / "lut.db"
    opts = {"space": space, "input_size": 16, "num_classes": 10, "backend": "torch", "threads": 1, "rounds": 2}
    res = build_on_node(db, TARGET, "local", **opts)
    assert res["measured"] == 8 and res["device"] == this_device() and res["imported"] >= 8
    with LutStore(db) as store:
        groups = store.summary()
    assert [g["device"] for g in groups] == [this_device()] and sum(g["entries"] for g in groups) == res["imported"]
    again = build_on_node(db, TARGET, "local", **opts)  # the node's copy has them all: nothing measured
    assert again["measured"] == 0
    with pytest.raises(FbnasError, match="no node of the Ray cluster offers 'no_such_device'"):
        build_on_node(db, "no_such_device", "local", **opts)
