"""Launch the FiftyOne App server on a run's dataset, bound to 127.0.0.1 unless asked.

The server runs as a child process in its own session (Ctrl-C reaches only the caller,
which then stops it) and dies with this process, even if this one is killed (Linux).
It gets its settings through the environment only: the database URI this process
uses, telemetry off unless ``telemetry=True``, and ``HOME`` inside curate's FiftyOne
folder, because FiftyOne's server writes an analytics id under ``~/.fiftyone``
whatever its config says. Its output goes to ``$CURATE_HOME/fiftyone/logs/app-<port>.log``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from curate.errors import CurateError, UsageError
from curate.fo.database import URI_ENV, brain_env, configure, connect, fiftyone_home
from curate.fo.runs import RUN_RECORD, read_run_record

log = logging.getLogger(__name__)

LOCAL = "127.0.0.1"


def is_loopback(address: str) -> bool:
    """Whether ``address`` only answers on this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: resolvable to anything
        return False


@dataclass
class AppHandle:
    """A running App server: open ``url`` in a browser; ``close()`` stops it."""

    url: str
    dataset: str
    _process: subprocess.Popen = field(repr=False)

    def wait(self) -> int:
        """Block until the server exits (Ctrl-C raises KeyboardInterrupt here); returns its exit code."""
        return self._process.wait()

    def close(self) -> None:
        """Stop the server (idempotent)."""
        _stop_server(self._process)

    def __enter__(self) -> "AppHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def launch_app(
    dataset_name: str,
    *,
    port: int = 5151,
    address: str = LOCAL,
    telemetry: bool = False,
    wait_timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> AppHandle:
    """Start the App server on ``dataset_name`` and return once it answers HTTP 200 (or raise).

    ``env`` adds variables for the server process (e.g. a brain similarity backend).
    """
    database = configure()
    fo = connect()
    if not fo.dataset_exists(dataset_name):
        raise UsageError(f"FiftyOne dataset '{dataset_name}' is not in the database {database.uri}; "
                         "run the recipe's `fiftyone` step first")
    _check_port_free(address, port)
    server_env = {
        "FIFTYONE_DATABASE_URI": database.uri,
        "FIFTYONE_DO_NOT_TRACK": "false" if telemetry else "true",
        "HOME": str(fiftyone_home() / "app-home"),
        **(env or {}),
    }
    Path(server_env["HOME"]).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log_path = fiftyone_home() / "logs" / f"app-{port}.log"
    process = _start_server(port=port, address=address, env=server_env, log_path=log_path)
    path = "/datasets/" + urllib.parse.quote(dataset_name)
    host = LOCAL if address in ("0.0.0.0", "::", "") else address  # a wildcard bind is browsed via localhost
    if not is_loopback(address):
        log.warning("the FiftyOne App is bound to %s: anyone who can reach this machine on port %d can browse "
                    "and tag the dataset (it has no login); bind 127.0.0.1 unless you mean to share it",
                    address or "every interface", port)
    url = f"http://{host}:{port}{path}"
    try:
        _wait_for_http_ok(url, process=process, timeout=wait_timeout, log_path=log_path)
    except BaseException:
        _stop_server(process)
        raise
    log.info("FiftyOne App ready at %s after %.1f s", url, time.monotonic() - started)
    return AppHandle(url=url, dataset=dataset_name, _process=process)


def open_app(
    run_dir: str | os.PathLike,
    *,
    port: int = 5151,
    address: str = LOCAL,
    telemetry: bool = False,
    wait_timeout: float = 60.0,
) -> AppHandle:
    """Launch the App on the dataset the run's ``fiftyone`` step recorded in ``<run>/fiftyone.json``."""
    record = read_run_record(run_dir)
    if record is None:
        raise UsageError(f"{Path(run_dir) / RUN_RECORD} does not exist: run {run_dir} has no FiftyOne dataset; "
                         "add a `fiftyone` step to the recipe and run it")
    if record.get("database") == "external" and not record.get("database_uri") and not os.environ.get(URI_ENV):
        raise UsageError(f"run {run_dir} used an external FiftyOne database; set {URI_ENV} to its URI")
    configure(record.get("database_uri"))
    # the server process loads the run's `faiss` brain runs (App similarity search) through this
    return launch_app(record["dataset"], port=port, address=address, telemetry=telemetry, wait_timeout=wait_timeout,
                      env=brain_env())


def _check_port_free(address: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            raise UsageError(f"cannot serve the App on {address}:{port} ({exc.strerror}); "
                             "pass a free --port or stop the process using it") from None


# Runs FiftyOne's server module in a child that dies with its parent (Linux: PR_SET_PDEATHSIG),
# so a killed `curate app` leaves no server behind.
_SERVER_LAUNCHER = """
import os, runpy, signal, sys
if sys.platform.startswith("linux"):
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    if os.getppid() != int(sys.argv[1]):
        sys.exit(1)
sys.argv = ["fiftyone.server.main"] + sys.argv[2:]
runpy.run_module("fiftyone.server.main", run_name="__main__", alter_sys=True)
"""


def _start_server(*, port: int, address: str, env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _SERVER_LAUNCHER, str(os.getpid()), "--port", str(port), "--address", address],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches `curate app`, which then stops the server in order
        )


def _stop_server(process: subprocess.Popen, *, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_http_ok(url: str, *, process: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CurateError(f"the FiftyOne App server exited with code {process.returncode} "
                              f"before answering; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.25)
    raise CurateError(f"the FiftyOne App did not answer HTTP 200 at {url} within {timeout:g} s "
                      f"(last: {last}); see {log_path}")
