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


WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from conftest import build_table
from curate.fo import mirror_table

name, media, rounds = sys.argv[2], sys.argv[3], int(sys.argv[4])
versions = [build_table(40, seed=0)[0], build_table(40, seed=1, start=20)[0]]
for r in range(rounds):
    mirror_table(versions[r % 2], dataset_name=name, media_dir=media, batch_size=7)
print("done", flush=True)
"""

SAMPLES = """query Samples($dataset: String!) {
  samples(dataset: $dataset, view: [], first: 500) {
    ... on SampleItemStrConnection { edges { node { ... on ImageSample { sample } } } }
  }
}"""


def app_samples(port: int, dataset: str) -> list[dict]:
    """The samples the App's grid would show now, through its own GraphQL endpoint."""
    import json

    body = json.dumps({"query": SAMPLES, "variables": {"dataset": dataset}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer["errors"]
    return [edge["node"]["sample"] for edge in answer["data"]["samples"]["edges"]]


def test_the_app_shows_consistent_samples_while_a_run_rewrites_its_dataset(dataset_name, make_table, tmp_path,
                                                                           port):
    """While another process re-mirrors the dataset (rows leave, arrive, change label), every answer the App
    gives has unique ids, only rows of one of the two tables, every row both tables share, a label one of them
    gives, and media files that exist: a reviewer never sees a half-written sample or a broken tile."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    old, _ = make_table(40, seed=0)
    new, _ = make_table(40, seed=1, start=20)
    labels = {}
    for table in (old, new):
        for sid, label in zip(table["id"], table["label"]):
            labels.setdefault(sid, set()).add(table.features["label"].int2str(label))
    shared = set(old["id"]) & set(new["id"])
    media = tmp_path / "media"
    mirror_table(old, dataset_name=dataset_name, media_dir=media)
    write_run_record(tmp_path, {"dataset": dataset_name})
    with open_app(tmp_path, port=port, wait_timeout=90):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(Path(__file__).parent), dataset_name,
                                   str(media), "12"], stdout=subprocess.PIPE, text=True)
        seen = []
        try:
            while writer.poll() is None:
                seen.append(app_samples(port, dataset_name))
            assert writer.stdout.read().splitlines()[-1] == "done"
        finally:
            writer.kill()
            writer.wait()
        seen.append(app_samples(port, dataset_name))
    print(f"\n{len(seen)} App answers during 12 rewrites")
    assert len(seen) >= 4  # the reads overlapped the writes
    for samples in seen:
        ids = [s["curate_id"] for s in samples]
        assert len(ids) == len(set(ids)) and set(ids) <= set(labels) and shared <= set(ids)
        for sample in samples:
            assert sample["ground_truth"]["label"] in labels[sample["curate_id"]]
            assert os.path.isfile(sample["filepath"])
    assert {s["curate_id"] for s in seen[-1]} == set(new["id"])  # 12 rounds end on the second table
