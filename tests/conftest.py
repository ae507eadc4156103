"""Test-session settings: offline hubs, and every cache inside pytest's tmp folders."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


TESTS = Path(__file__).resolve().parent
ONE_TORCH_THREAD = frozenset({"condense", "learn", "relabel", "synth"})
"""Test folders of tiny torch models: on a shared 2-core CPU one intra-op thread runs them far faster
(no OpenMP barrier stalls), so their tests run with one and restore the count afterwards."""


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need an accelerator: skipped, with the reason, where torch sees none."""
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a GPU (torch.cuda.is_available() is False)")
        for item in gpu_tests:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _tiny_models_on_one_torch_thread(request):
    if Path(request.node.path).resolve().relative_to(TESTS).parts[0] not in ONE_TORCH_THREAD:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class SimulatedCrash(BaseException):
    """What the ``write_faults`` fixture raises: a BaseException, like a kill, so nothing catches it."""


class WriteFaults:
    """Counts commits of curate's atomic writes and crashes at the ``fail_at``-th one (1-based); with
    ``under`` and ``name`` only commits into that folder (and with that file name) count. ``paths``
    records every commit's destination."""

    Crash = SimulatedCrash

    def __init__(self, real):
        self._real = real
        self.fail_at: int | None = None
        self.under: Path | None = None
        self.name: str | None = None
        self.count = 0
        self.paths: list[Path] = []

    def reset(self, fail_at: int | None, *, under: Path | None = None, name: str | None = None) -> None:
        self.fail_at, self.under, self.name, self.count = fail_at, under, name, 0

    def __call__(self, src, dst):
        dst = Path(dst)
        self.paths.append(dst)
        if (self.under is None or dst.is_relative_to(self.under)) and (self.name is None or dst.name == self.name):
            self.count += 1
            if self.fail_at is not None and self.count == self.fail_at:
                raise SimulatedCrash(f"simulated crash at commit #{self.count} ({dst.name})")
        self._real(src, dst)


@pytest.fixture
def write_faults(monkeypatch) -> WriteFaults:
    """Deterministic crashes at the n-th atomic commit, through the one seam of curate.workspace."""
    from curate import workspace

    faults = WriteFaults(workspace._replace_into_place)
    monkeypatch.setattr(workspace, "_replace_into_place", faults)
    return faults


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


# --- one MongoDB for the whole test session (FiftyOne) ----------------------------------
# Started on a free localhost port with WiredTiger journal preallocation off (a fresh data
# folder would otherwise take ~300 MB); FIFTYONE_DATABASE_URI and CURATE_HOME point at it and
# a temporary folder before FiftyOne is imported.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def fiftyone_db(tmp_path_factory):
    from curate.fo import database

    root = tmp_path_factory.mktemp("fiftyone")
    (root / "db").mkdir()
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(database.mongod_path()), "--dbpath", str(root / "db"), "--port", str(port), "--bind_ip", "127.0.0.1",
         "--nounixsocket", "--logpath", str(root / "mongod.log"),
         f"--wiredTigerEngineConfigString={database.WIREDTIGER_CONFIG}"],
        stdout=subprocess.DEVNULL,
    )
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() - started > 30:
                proc.kill()
                pytest.fail(f"mongod did not start; see {root / 'mongod.log'}")
            time.sleep(0.05)
    print(f"\nmongod listening after {time.monotonic() - started:.2f} s")
    mp = pytest.MonkeyPatch()
    uri = f"mongodb://127.0.0.1:{port}"
    mp.setenv("FIFTYONE_DATABASE_URI", uri)
    mp.setenv("CURATE_HOME", str(root / "home"))
    mp.setenv("FIFTYONE_DO_NOT_TRACK", "true")
    database.configure()
    try:
        yield uri
    finally:
        import sys

        if "fiftyone.core.odm.database" in sys.modules:
            sys.modules["fiftyone.core.odm.database"]._disconnect()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        mp.undo()


@pytest.fixture
def dataset_name(fiftyone_db):
    """A fresh dataset name; the dataset is deleted after the test."""
    from curate.fo.runs import delete_run_dataset

    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    delete_run_dataset(name)


@pytest.fixture
def fo(fiftyone_db):
    """The ``fiftyone`` module, imported after the database is configured."""
    from curate.fo.database import connect

    return connect()


@pytest.fixture
def port():
    """A localhost port that was free a moment ago."""
    return free_port()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray cluster of 2 CPUs for the whole session (skips where Ray is not installed)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_cluster(ray_session, request):
    """The session's Ray cluster, with the requesting test module's classes (batch functions defined in it)
    pickled by value: its workers cannot import test modules by name."""
    ray_session.cloudpickle.register_pickle_by_value(request.module)
    yield ray_session
    ray_session.cloudpickle.unregister_pickle_by_value(request.module)
