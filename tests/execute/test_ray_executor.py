"""The Ray executor (one local 2-CPU cluster for the session): the same ids and values as the local
executor for predict, embed and annotate, a killed worker retried without duplicates, finished shards
reused by a rerun, and a recipe running its batch steps on Ray with what it did in step.json."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from curate.data import make_table
from curate.execute.ray import RayExecutor, RayOptions
from curate.models import create_model

pytestmark = pytest.mark.usefixtures("ray_cluster")

OPTIONS = RayOptions(workers=2, num_cpus=1, shard_size=8, max_retries=2)


def _table(n: int = 30):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    table = make_table(ids=[f"r{i}" for i in range(n)], images=images, labels=rng.integers(0, 3, n),
                       class_names=["a", "b", "c"], splits="train")
    return table, images


def _model():
    return create_model("convnet", num_classes=3, width=8, depth=2, im_size=16, seed=0)


class PixelSums:
    """Each row's position and pixel sum plus ``offset``; the worker that meets ``die_at`` kills its own process
    the first time (a marker file remembers it, across the restart)."""

    def __init__(self, *, offset: int = 0, die_at: int | None = None, marker: str | None = None):
        self.offset, self.die_at, self.marker = offset, die_at, marker

    def setup(self):
        pass

    def __call__(self, batch):
        if self.die_at in batch["index"] and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        n = len(batch["image"])
        return {"row": batch["index"], "pixels": batch["image"].reshape(n, -1).sum(1) + self.offset}


def test_predict_and_embed_through_ray_equal_the_local_executor():
    from curate.learn import embed, predict

    table, _ = _table()
    picked = np.random.default_rng(1).permutation(len(table))[:23]
    model = _model()
    for run in (predict, embed):
        local = run(model, table, indices=picked, batch_size=5, device="cpu", progress=False)
        remote = run(model, table, indices=picked, batch_size=5, device="cpu", progress=False,
                     executor=RayExecutor(OPTIONS))
        assert remote.shape == local.shape
        np.testing.assert_allclose(remote, local, rtol=1e-5, atol=1e-6)


def test_annotate_through_ray_writes_the_same_label_maps(tmp_path):
    from curate.relabel import LabelMapStore, annotate, create_annotator

    table, _ = _table()
    kwargs = dict(shard_size=8, batch_size=4, signature="s", progress=False)
    local = annotate(create_annotator("dense_classifier", _model(), top_k=2, device="cpu"), table,
                     tmp_path / "local", **kwargs)
    executor = RayExecutor(OPTIONS)
    remote = annotate(create_annotator("dense_classifier", _model(), top_k=2, device="cpu"), table,
                      tmp_path / "ray", executor=executor, **kwargs)
    assert (remote.shards, remote.computed) == (local.shards, local.computed) == (4, 4)
    a, b = LabelMapStore(local.folder), LabelMapStore(remote.folder)
    assert b.ids.tolist() == a.ids.tolist() == table["id"]
    for name in ("global_probs", "label_scores", "scores"):
        np.testing.assert_allclose(b.read_array(name), a.read_array(name), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(b.read_array("classes"), a.read_array("classes"))
    assert executor.record["workers"] == 2


def test_a_killed_worker_is_restarted_and_the_output_is_complete_without_duplicates(tmp_path):
    table, images = _table()
    marker = tmp_path / "died"
    out = RayExecutor(OPTIONS)(PixelSums(die_at=13, marker=str(marker)), table, batch_size=3, progress=False)
    assert marker.exists()  # a worker did die mid-job
    np.testing.assert_array_equal(out["row"], np.arange(len(table)))
    np.testing.assert_array_equal(out["pixels"], images.reshape(len(table), -1).sum(1))


def test_a_rerun_reuses_finished_shards_and_computes_only_the_rest(tmp_path):
    table, images = _table()
    sums = images.reshape(len(table), -1).sum(1)
    first = RayExecutor(OPTIONS, shard_dir=tmp_path, signature="key")
    first(PixelSums(), table, batch_size=4, indices=np.arange(16), progress=False)  # shards 0-7, 8-15
    written = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert len(written) == 2

    # the rerun's batch function differs (offset 1): reused shards keep what was written, the rest is new
    again = RayExecutor(OPTIONS, shard_dir=tmp_path, signature="key")
    out = again(PixelSums(offset=1), table, batch_size=4, progress=False)
    assert (again.record["shards"], again.record["shards_reused"]) == (4, 2)
    np.testing.assert_array_equal(out["row"], np.arange(len(table)))
    np.testing.assert_array_equal(out["pixels"], np.concatenate([sums[:16], sums[16:] + 1]))
    assert all((tmp_path / name).stat().st_mtime_ns == t for name, t in written.items())


RECIPE = """\
name: scale
defaults: {executor: %s, ray: {workers: 2, num_cpus: 1, shard_size: 16}}
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 2}
  - id: embed
    uses: embed
    inputs: {data: cifar}
    with: {model: resnet20-cifar, batch_size: 8}
  - id: relabel
    uses: relabel
    inputs: {data: cifar}
    with: {model: resnet20-cifar, split: null, shard_size: 16, batch_size: 8, fiftyone: false, executor: %s}
"""


def test_a_recipe_runs_its_batch_steps_on_ray_like_locally_and_records_it_in_step_json(tmp_path):
    from curate.recipes import parse_recipe, run_recipe

    runs = {}
    for executor in ("local", "ray"):
        # defaults name the executor of embed; relabel names its own (the other one)
        other = "ray" if executor == "local" else "local"
        plan = parse_recipe(RECIPE % (executor, other), filename="scale.yaml")
        runs[executor] = run_recipe(plan, workdir=tmp_path / executor, progress=False).run_dir
    manifests = {e: {s: json.loads((d / s / "step.json").read_text()) for s in ("embed", "relabel")}
                 for e, d in runs.items()}
    assert manifests["ray"]["embed"]["executor"]["ray"] | {"startup_s": 0} == {
        "name": "ray", "address": "local", "workers": 2, "num_cpus": 1.0, "num_gpus": 0.0, "shard_size": 16,
        "shards": 3, "shards_reused": 0, "tasks": 5, "startup_s": 0}
    assert manifests["local"]["embed"]["executor"] == {"local": {"name": "local"}}
    assert manifests["local"]["relabel"]["executor"]["ray"]["workers"] == 2
    assert manifests["ray"]["relabel"]["executor"] == {"local": {"name": "local"}}
    assert not any((d / s / ".shards").exists() for d in runs.values() for s in ("embed", "relabel"))
    for step, name in (("embed", "embeddings"), ("relabel", "label_scores")):
        (values, ids), (local_values, local_ids) = (
            (np.load(run_dir / step / f"{name}.npy"), np.load(run_dir / step / f"{name}.ids.npy"))
            for run_dir in (runs["ray"], runs["local"]))
        assert len(ids) == 40 and ids.tolist() == local_ids.tolist()
        np.testing.assert_allclose(values, local_values, rtol=1e-4, atol=1e-5)
