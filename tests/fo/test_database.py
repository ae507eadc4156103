"""The default embedded database lives under CURATE_HOME, is shared by curate processes, and
FiftyOne never writes to the user's ~/.fiftyone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil

from curate.fo.database import redact

CLIENT = """
import json
from curate.fo import database
db = database.configure()
fo = database.connect()
fo.list_datasets()  # connects
again = database._start_embedded(db.folder)  # what a second curate process does: attach, not start
print("RESULT", json.dumps({"uri": db.uri, "again": again, "embedded": db.embedded, "folder": str(db.folder)}))
"""


def result(out: subprocess.CompletedProcess) -> dict:
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise AssertionError(f"client did not report (exit {out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}")


def mongods_on(folder: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and cmd[0].endswith("mongod") and folder in cmd:
            found.append(proc)
    return found


def test_embedded_mongod_lives_under_curate_home_is_shared_and_stops_with_its_clients(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_")}
    env.update(HOME=str(tmp_path / "home"), CURATE_HOME=str(tmp_path / "curate"), FIFTYONE_DO_NOT_TRACK="true")
    (tmp_path / "home").mkdir()
    out = subprocess.run([sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, timeout=180)
    report = result(out)

    folder = str(tmp_path / "curate" / "fiftyone" / "db")
    assert report["embedded"] and report["folder"] == folder
    assert report["again"] == report["uri"]
    assert not (tmp_path / "home" / ".fiftyone").exists()
    size = sum(f.stat().st_size for f in (tmp_path / "curate" / "fiftyone" / "db").rglob("*") if f.is_file())
    assert size < 50e6, f"database folder holds {size / 1e6:.0f} MB: journal preallocation is on"
    deadline = time.monotonic() + 30
    while mongods_on(folder) and time.monotonic() < deadline:  # its last client exited: mongod stops
        time.sleep(0.2)
    assert not mongods_on(folder)


def test_redact_hides_the_password_only():
    assert redact("mongodb://alice:s3cret@db.example:27017/x") == "mongodb://alice:***@db.example:27017/x"
    assert redact("mongodb://127.0.0.1:27017") == "mongodb://127.0.0.1:27017"


def test_importing_the_adapter_and_step_imports_no_fiftyone():
    """FiftyOne must be configured before it is imported, so importing curate.fo may not import it."""
    code = ("import sys, curate.fo, curate.steps.fiftyone; "
            "print(sorted(m for m in ('fiftyone', 'datasets', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
