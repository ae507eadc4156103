"""The App server answers HTTP 200 on 127.0.0.1 within a bounded wait and stops cleanly."""

from __future__ import annotations

import socket
import time
import urllib.parse
import urllib.request

import pytest

from curate.errors import UsageError
from curate.fo import launch_app, mirror_table, open_app, write_run_record


def non_loopback_ipv4() -> list[str]:
    import psutil

    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


def test_launch_app_serves_the_dataset_on_localhost_and_stops(dataset_name, make_table, tmp_path, port):
    table, _ = make_table(3)
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    write_run_record(tmp_path, {"dataset": dataset_name})
    image = dataset.first().filepath

    started = time.monotonic()
    handle = open_app(tmp_path, port=port, wait_timeout=90)
    print(f"\nApp answered after {time.monotonic() - started:.1f} s")
    try:
        assert handle.url == f"http://127.0.0.1:{port}/datasets/{dataset_name}"
        with urllib.request.urlopen(handle.url, timeout=5) as response:
            assert response.status == 200
        # the server can read the mirrored media it will show in the grid
        media = f"http://127.0.0.1:{port}/media?filepath={urllib.parse.quote(image)}"
        with urllib.request.urlopen(media, timeout=5) as response:
            assert response.status == 200 and response.read() == open(image, "rb").read()
        # bound to localhost only: the machine's other addresses do not answer
        for other in non_loopback_ipv4():
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=1).close()
    finally:
        handle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_launch_app_refuses_a_busy_port_and_unknown_dataset(dataset_name, make_table, tmp_path, port):
    with pytest.raises(UsageError, match="not in the database"):
        launch_app("no-such-dataset", port=port)
    table, _ = make_table(1)
    mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(UsageError, match="free --port"):
            launch_app(dataset_name, port=port)


def test_open_app_without_a_fiftyone_step_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no FiftyOne dataset"):
        open_app(tmp_path)
