"""Filters and provenance: planted copies and low-confidence samples are dropped; provenance survives reload."""

import json

import datasets
import numpy as np
import pytest

from curate.data import make_table, validate_table
from curate.errors import UsageError
from curate.data.table import PROVENANCE, new_table_version
from synth.filters import (LOW_CONFIDENCE, NEAR_COPY, SAMPLE_COLUMNS, FilterResult, calibrated_confidence,
                           filter_samples, synthetic_rows)

RNG = np.random.default_rng(0)
NAMES = ["cat", "dog"]


def test_filter_drops_a_planted_copy_and_a_low_confidence_sample():
    real = RNG.normal(size=(20, 16)).astype(np.float32)
    fake = RNG.normal(size=(5, 16)).astype(np.float32)
    fake[2] = real[7] * 3.0  # a copy (cosine distance 0 at any scale)
    labels = np.array([0, 1, 0, 1, 0])
    probs = np.tile([0.1, 0.9], (5, 1))
    probs[[0, 2, 4]] = [0.9, 0.1]
    probs[3] = [0.6, 0.4]  # target class 1 gets only 0.4
    result = filter_samples(probs, labels, fake, real, real_ids=[f"r{i}" for i in range(20)], min_confidence=0.5,
                            min_copy_distance=0.05)
    assert result.keep.tolist() == [True, True, False, False, True]
    assert result.reason[2] == NEAR_COPY and result.reason[3] == LOW_CONFIDENCE
    assert result.nearest[2] == "r7" and result.copy_distance[2] < 1e-5
    assert result.copy_distance[[0, 1, 4]].min() > 0.05  # random 16-d directions are far apart
    np.testing.assert_allclose(result.confidence, [0.9, 0.9, 0.9, 0.4, 0.9], rtol=1e-6)
    assert result.counts() == {"kept": 3, "low_confidence": 1, "near_copy": 1}


def test_calibrated_confidence_is_the_quantile_of_the_true_class_probability():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    labels = np.array([0, 1, 0, 1])  # p(true) = 0.9, 0.8, 0.4, 0.3: the predicted class does not matter
    assert calibrated_confidence(probs, labels, 0.0) == pytest.approx(0.3)
    assert calibrated_confidence(probs, labels, 1.0) == pytest.approx(0.9)
    assert calibrated_confidence(probs, labels, 0.5) == pytest.approx(0.6)
    with pytest.raises(UsageError, match="quantile"):
        calibrated_confidence(probs, labels, 1.5)
    with pytest.raises(UsageError, match="4 labels"):
        calibrated_confidence(probs[:3], labels, 0.5)


def _real_table(n=6):
    images = RNG.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    return make_table(ids=[f"real/{i}" for i in range(n)], images=images, labels=np.arange(n) % 2, class_names=NAMES,
                      splits=["train"] * (n - 2) + ["test"] * 2)


def _synthetic(step="synth", numbers=(0, 3)):
    k = len(numbers)
    kept = FilterResult(keep=np.ones(k, bool), reason=np.full(k, "kept"), confidence=np.array([0.8, 0.7][:k]),
                        copy_distance=np.array([0.3, 0.2][:k]), nearest=np.array(["real/1", "real/2"][:k]))
    return synthetic_rows(
        images=RNG.integers(0, 256, size=(k, 8, 8, 3), dtype=np.uint8), labels=np.array([1, 0][:k]),
        numbers=np.array(numbers), seeds=np.array([11, 12][:k]), step_id=step, class_names=NAMES, split="train",
        method="classifier_guidance", parameters={"diffusion_model": "ddpm", "filter_model": "convnet (step judge)",
                                                  "filter_scoring": "independent"},
        guidance_scale=np.full(k, 2.0), kept=kept)


def append_rows(table, rows):
    return new_table_version(table, add=rows, where="test")


def test_provenance_survives_the_new_table_version_and_reload(tmp_path):
    """New rows carry set/ids/provenance after save_to_disk + load; real rows get nulls; the input is untouched."""
    real = _real_table()
    before = (len(real), list(real.column_names))
    table = append_rows(real, _synthetic())
    assert (len(real), list(real.column_names)) == before
    table.save_to_disk(str(tmp_path / "t"))
    loaded = datasets.load_from_disk(str(tmp_path / "t"))
    validate_table(loaded, where="test")
    assert loaded["id"][-2:] == ["synth:synth:0", "synth:synth:3"]
    assert loaded["set"] == ["real"] * 6 + ["synthetic"] * 2
    assert loaded["split"][-2:] == ["train", "train"] and loaded["label"][-2:] == [1, 0]
    assert loaded["seed"] == [None] * 6 + [11, 12] and loaded["source_step"][-1] == "synth"
    assert loaded["guidance_scale"][-1] == 2.0 and loaded["nearest_real"][-2:] == ["real/1", "real/2"]
    assert loaded["filter_confidence"] == [None] * 6 + [pytest.approx(0.8), pytest.approx(0.7)]
    assert json.loads(loaded["parameters"][-1])["filter_model"] == "convnet (step judge)"
    assert loaded["parameters"][:6] == [None] * 6
    assert set(PROVENANCE) | set(SAMPLE_COLUMNS) <= set(loaded.column_names)
    assert np.asarray(loaded[-1]["image"]).shape == (8, 8, 3)


def test_a_second_synth_version_appends_to_the_first_and_ids_cannot_clash():
    table = append_rows(append_rows(_real_table(), _synthetic("a")), _synthetic("b", numbers=(0,)))
    assert table["source_step"][-3:] == ["a", "a", "b"]
    with pytest.raises(UsageError, match="already exist"):
        append_rows(table, _synthetic("b", numbers=(0,)))


def test_provenance_survives_export_to_parquet_and_reload(tmp_path):
    """The Hub export (Parquet shards per split) keeps the synthetic rows' set, ids and provenance."""
    export = pytest.importorskip("curate.export")
    table = append_rows(_real_table(), _synthetic())
    export.write_export(export.build_dataset_dict(table), tmp_path, card_text="# test\n")
    train = datasets.load_dataset("parquet", data_files=str(tmp_path / "hub" / "data" / "train-*.parquet"),
                                  split="train", cache_dir=str(tmp_path / "cache"))
    synthetic = train.filter(lambda s: s == "synthetic", input_columns="set")
    assert synthetic["id"] == ["synth:synth:0", "synth:synth:3"]
    assert synthetic["seed"] == [11, 12] and synthetic["method"] == ["classifier_guidance"] * 2
    assert synthetic["nearest_real"] == ["real/1", "real/2"]
    assert [json.loads(p)["filter_scoring"] for p in synthetic["parameters"]] == ["independent"] * 2
