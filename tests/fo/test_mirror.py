"""The FiftyOne mirror matches its table, and reruns update instead of duplicating."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from curate.fo import (
    add_predictions,
    compute_embeddings_plot,
    dataset_name_for_run,
    load_view,
    mirror_table,
    read_tags,
    save_view,
    select_ids,
    set_field_values,
    tags_fingerprint,
)

CLASSES = ["cat", "dog", "ship"]


def by_id(dataset, field):
    ids, values = dataset.values(["curate_id", field])
    return dict(zip(ids, values))


def test_mirror_counts_labels_fields_and_media_match_the_table(dataset_name, make_table, tmp_path):
    table, pixels = make_table(12)
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")

    assert len(dataset) == 12
    assert sorted(dataset.values("curate_id")) == sorted(table["id"])
    gt = by_id(dataset, "ground_truth.label")
    assert gt == {i: CLASSES[y] for i, y in zip(table["id"], table["label"])}
    for column in ("split", "set", "origin"):
        assert by_id(dataset, column) == dict(zip(table["id"], table[column]))
    assert dataset.default_classes == CLASSES
    # each sample's file holds its own row's pixels (ids and media are not shuffled)
    files = by_id(dataset, "filepath")
    for sid, img in zip(table["id"], pixels):
        assert files[sid].startswith(str((tmp_path / "media").resolve()))
        np.testing.assert_array_equal(np.asarray(Image.open(files[sid])), img)
    assert len(list((tmp_path / "media").iterdir())) == 12


def test_rows_with_a_source_file_are_referenced_in_place(dataset_name, make_table, tmp_path):
    sources = [tmp_path / f"src{i}.png" for i in range(4)]
    table, pixels = make_table(4, paths=[str(p) for p in sources])
    for img, path in zip(pixels, sources):
        Image.fromarray(img).save(path)
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")

    assert by_id(dataset, "filepath") == {sid: str(p) for sid, p in zip(table["id"], sources)}
    assert not (tmp_path / "media").exists()

    # media="write" copies the source files into the run, and a rerun repoints the samples there
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media", media="write")
    files = by_id(dataset, "filepath")
    for sid, src in zip(table["id"], sources):
        assert files[sid].startswith(str((tmp_path / "media").resolve()))
        assert open(files[sid], "rb").read() == src.read_bytes()
    assert len(dataset) == 4


def test_unlabeled_rows_have_no_ground_truth(dataset_name, make_table, tmp_path):
    table, _ = make_table(3)
    table = table.map(lambda row: {"label": -1 if row["id"] == "toy/0001" else row["label"]})
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    gt = by_id(dataset, "ground_truth")
    assert gt["toy/0001"] is None and gt["toy/0000"] is not None


def test_rerun_updates_in_place_keeps_tags_and_removes_dropped_rows(dataset_name, make_table, tmp_path):
    table, _ = make_table(10)
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    select_ids(dataset, ["toy/0003"]).tag_samples("reviewed")
    first_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "media").iterdir()}

    # same rows again: nothing duplicated, no media rewritten
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    assert len(dataset) == 10
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "media").iterdir()} == first_files

    # drop two rows, add two, relabel one
    bigger, _ = make_table(12)
    changed = bigger.select([i for i in range(12) if i not in (0, 1)])
    relabel = (changed[1]["label"] + 1) % 3  # row of "toy/0003"
    changed = changed.map(lambda row: {"label": relabel if row["id"] == "toy/0003" else row["label"]})
    dataset = mirror_table(changed, dataset_name=dataset_name, media_dir=tmp_path / "media")

    ids = dataset.values("curate_id")
    assert len(ids) == len(set(ids)) == 10
    assert set(ids) == set(changed["id"])
    assert by_id(dataset, "ground_truth.label")["toy/0003"] == CLASSES[relabel]
    assert read_tags(dataset) == {"toy/0003": ["reviewed"]}


def test_rerun_refuses_a_dataset_curate_did_not_create(dataset_name, make_table, tmp_path, fo):
    from curate.errors import UsageError

    fo.Dataset(dataset_name, persistent=True)
    table, _ = make_table(2)
    with pytest.raises(UsageError, match="not created by curate"):
        mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")


def test_predictions_store_label_confidence_and_log_probs(dataset_name, make_table, tmp_path):
    table, _ = make_table(8)
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=6).astype(np.float32)
    ids = np.asarray(table["id"])[[5, 0, 7, 2, 1, 4]]  # a shuffled subset

    add_predictions(dataset, "teacher", probs, ids, CLASSES)

    stored = by_id(dataset, "teacher")
    for sid, p in zip(ids, probs):
        assert stored[sid].label == CLASSES[int(p.argmax())]
        assert stored[sid].confidence == pytest.approx(float(p.max()), rel=1e-6)
        np.testing.assert_allclose(stored[sid].logits, np.log(p), rtol=1e-5)
    assert stored["toy/0003"] is None and stored["toy/0006"] is None
    with pytest.raises(ValueError, match="3 class names"):
        add_predictions(dataset, "teacher", probs[:, :2], ids, CLASSES)
    with pytest.raises(ValueError, match="do not match"):
        add_predictions(dataset, "teacher", probs[:1], ["nope"], CLASSES)


def test_set_field_values_and_saved_views_reload(dataset_name, make_table, tmp_path, fo):
    table, _ = make_table(6)
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    set_field_values(dataset, "audit_score", {"toy/0001": np.float32(0.5), "toy/0004": 0.25})
    assert by_id(dataset, "audit_score") == {"toy/0000": None, "toy/0001": 0.5, "toy/0002": None,
                                             "toy/0003": None, "toy/0004": 0.25, "toy/0005": None}
    with pytest.raises(ValueError, match="reserved"):
        set_field_values(dataset, "ground_truth", {"toy/0001": 1})

    save_view(dataset, "audit_flagged", select_ids(dataset, ["toy/0004", "toy/0001"]))
    save_view(dataset, "audit_flagged", select_ids(dataset, ["toy/0004", "toy/0001", "toy/0002"]))  # overwrite
    fresh = fo.load_dataset(dataset_name)
    fresh.reload()
    assert fresh.list_saved_views() == ["audit_flagged"]
    assert load_view(fresh, "audit_flagged").values("curate_id") == ["toy/0004", "toy/0001", "toy/0002"]
    with pytest.raises(KeyError, match="no saved view"):
        load_view(fresh, "missing")


def test_reviewer_tags_read_back_and_fingerprint_tracks_changes(dataset_name, make_table, tmp_path):
    table, _ = make_table(5)
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    assert read_tags(dataset) == {}
    select_ids(dataset, ["toy/0001", "toy/0003"]).tag_samples("mislabeled")
    select_ids(dataset, ["toy/0003"]).tag_samples("ambiguous")
    tags = read_tags(dataset)
    assert tags == {"toy/0001": ["mislabeled"], "toy/0003": ["ambiguous", "mislabeled"]}
    before = tags_fingerprint(tags)
    assert tags_fingerprint({"toy/0003": ["mislabeled", "ambiguous"], "toy/0001": ["mislabeled"]}) == before

    select_ids(dataset, ["toy/0001"]).untag_samples("mislabeled")
    assert tags_fingerprint(read_tags(dataset)) != before
    select_ids(dataset, ["toy/0001"]).tag_samples("mislabeled")
    assert tags_fingerprint(read_tags(dataset)) == before


def test_embeddings_plot_is_aligned_by_curate_id(dataset_name, make_table, tmp_path):
    table, _ = make_table(30)
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    rng = np.random.default_rng(2)
    ids = rng.permutation(np.asarray(table["id"]))[:25]
    signal = rng.normal(size=25) * 10  # the dominant direction; PCA's first axis must follow it per sample
    embeddings = np.column_stack([signal, rng.normal(size=(25, 7)) * 0.1]).astype(np.float32)

    key = compute_embeddings_plot(dataset, embeddings, ids, brain_key="embed_viz", method="pca")

    assert key in dataset.list_brain_runs()
    results = dataset.load_brain_results(key)
    sample_to_curate = dict(zip(dataset.values("id"), dataset.values("curate_id")))
    order = [sample_to_curate[s] for s in results.current_sample_ids]
    x = results.current_points[:, 0]
    expected = dict(zip(ids, signal))
    assert abs(np.corrcoef(x, [expected[i] for i in order])[0, 1]) > 0.99
    # recomputing under the same key replaces the run
    compute_embeddings_plot(dataset, embeddings, ids, brain_key="embed_viz", method="pca")
    assert dataset.list_brain_runs() == ["embed_viz"]
    with pytest.raises(ValueError, match="t-SNE needs at least"):
        compute_embeddings_plot(dataset, embeddings, ids, brain_key="embed_tsne", method="tsne")


def test_dataset_name_is_stable_per_run_dir_and_distinct_across_them(tmp_path):
    a = dataset_name_for_run("My Demo!", tmp_path / "runs" / "a")
    assert a == dataset_name_for_run("My Demo!", tmp_path / "runs" / "a")
    assert a != dataset_name_for_run("My Demo!", tmp_path / "runs" / "b")
    assert a.startswith("curate-my-demo-") and set(a) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
