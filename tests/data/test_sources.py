"""Data sources: each loads a validated, stable sample table and reports bad input in one line."""

import dataclasses
import json
import logging
import shutil
import typing
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from curate.config import ConfigError, from_mapping
from curate.data import SOURCES, decode_images, load_source, source_config_class, source_fingerprint
from curate.data.sources.demo import DEMO_DIR, first_per_class
from curate.errors import UnknownName, UsageError

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _config(kind, **fields):
    return from_mapping(source_config_class(kind), {"kind": kind, **fields})


def _load(kind, tmp_path, **fields):
    return load_source(_config(kind, **fields), cache_dir=tmp_path / "cache", progress=False)


def _snapshot(root: Path):
    """Every entry under root with its size and mtime: any write shows up."""
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def _one_line(exc_info, *parts):
    message = str(exc_info.value)
    assert "\n" not in message, message
    for part in parts:
        assert str(part) in message, message


# --- registry ------------------------------------------------------------------------


def _example_imagefolder(root: Path) -> dict:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, cls in enumerate(("cat", "dog")):
            (root / "src" / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    root / "src" / split / cls / f"{c}{i}.png")
    return {"path": str(root / "src")}


def _example_hf(root: Path) -> dict:
    ds, _ = _foreign_dataset(4)
    ds.save_to_disk(str(root / "src"))
    return {"path": str(root / "src"), "image_column": "img", "label_column": "fine_label", "split": "train"}


def _example_npz(root: Path) -> dict:
    (root / "src").mkdir()
    images = np.random.default_rng(1).integers(0, 256, size=(6, 5, 5, 3), dtype=np.uint8)
    np.savez(root / "src" / "d.npz", images=images, labels=np.array([0, 1, 2, 0, 1, 2]))
    return {"path": str(root / "src" / "d.npz"), "class_names": ["a", "b", "c"]}


EXAMPLES = {"demo": lambda root: {"limit_per_class": 1}, "imagefolder": _example_imagefolder, "hf": _example_hf,
            "npz": _example_npz}
"""A small example config per registered source, built in a temporary folder (``src/`` holds its data)."""


@pytest.mark.parametrize("kind", SOURCES.names())
def test_every_source_follows_the_contract(kind, tmp_path):
    """Every registered source: a frozen kw_only Config whose first field is kind: Literal[name]; its example
    loads a valid table whose ids are stable across loads, with a stable fingerprint, and its data is only read.
    A new source is tested by registering it and adding its example to EXAMPLES."""
    from curate.data import validate_table

    cls = SOURCES.get(kind)
    config_cls = source_config_class(kind)
    first = dataclasses.fields(config_cls)[0]
    assert first.name == "kind" and typing.get_type_hints(config_cls)["kind"] == typing.Literal[kind]
    assert config_cls.__dataclass_params__.frozen and first.kw_only
    assert kind in EXAMPLES, f"add an example config for the source '{kind}' to EXAMPLES"
    fields = EXAMPLES[kind](tmp_path)
    source = tmp_path / "src"
    before = _snapshot(source) if source.exists() else None
    config = _config(kind, **fields)
    first_load = load_source(config, cache_dir=tmp_path / "cache1", progress=False)
    validate_table(first_load, where=kind)
    again = load_source(config, cache_dir=tmp_path / "cache2", progress=False)
    assert first_load["id"][:] == again["id"][:] and first_load["label"][:] == again["label"][:]
    assert decode_images(first_load, [0]).shape == decode_images(again, [0]).shape
    assert source_fingerprint(config) == source_fingerprint(config) == cls().fingerprint(config)
    if before is not None:
        assert _snapshot(source) == before  # sources only read


def test_unknown_source_suggests_a_name():
    with pytest.raises(UnknownName, match="did you mean 'imagefolder'"):
        source_config_class("imagefolde")


# --- demo ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_table():
    return load_source(source_config_class("demo")(), cache_dir=Path("/nonexistent-cache"), progress=False)


def test_demo_counts(demo_table):
    """932 test rows with CIFAR-10's natural class counts, 200 train rows per class."""
    assert demo_table.features["label"].names == CIFAR_CLASSES
    splits = np.array(demo_table["split"][:])
    labels = np.array(demo_table["label"][:])
    assert np.bincount(labels[splits == "test"]).tolist() == [97, 78, 94, 95, 85, 84, 105, 96, 98, 100]
    assert np.bincount(labels[splits == "train"]).tolist() == [200] * 10
    assert set(demo_table["set"][:]) == {"real"}


def test_demo_ids_stable_unique_and_official(demo_table):
    """ids are cifar10/<split>/<official index>, unique, and identical on a second load."""
    ids = demo_table["id"][:]
    assert len(set(ids)) == len(ids)
    assert ids[2000:2003] == ["cifar10/test/00000", "cifar10/test/00001", "cifar10/test/00002"]
    assert ids[:2] == ["cifar10/train/00000", "cifar10/train/00001"]
    again = load_source(source_config_class("demo")(splits=("test",), limit_per_class=3),
                        cache_dir=Path("/nonexistent-cache"), progress=False)
    assert set(again["id"][:]) <= set(ids) and len(again) == 30


def test_demo_test_images_are_lossless(demo_table, shared_data):
    """Decoded demo test images are byte-identical to the shared lossless CIFAR-10 arrays."""
    test = shared_data / "cifar10" / "test"
    rows = np.flatnonzero(np.array(demo_table["split"][:]) == "test")
    np.testing.assert_array_equal(decode_images(demo_table, rows), np.load(test / "images.npy"))
    np.testing.assert_array_equal(np.array(demo_table["label"][:])[rows], np.load(test / "labels.npy"))


def test_demo_train_subset_is_first_200_per_class(demo_table, shared_data):
    train = shared_data / "cifar10" / "train"
    labels, indices = np.load(train / "labels.npy"), np.load(train / "indices.npy")
    keep = first_per_class(labels, 200)
    expected = [f"cifar10/train/{i:05d}" for i in indices[keep]]
    assert demo_table["id"][:2000] == expected


def test_demo_folder_fits_the_size_budget():
    """The bundled demo folder (data + weights + docs) stays under 10 MB."""
    assert sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file()) < 10_000_000


def test_first_per_class_keeps_row_order():
    labels = np.array([2, 0, 2, 2, 1, 0, 2])
    assert first_per_class(labels, 2).tolist() == [True, True, True, False, True, True, False]


def test_demo_rejects_unknown_split():
    with pytest.raises(ConfigError, match="splits"):
        _config("demo", splits=["val"])


# --- imagefolder ----------------------------------------------------------------------


@pytest.fixture
def jpeg_tree(tmp_path, shared_data):
    """A small split-layout copy of the shared CIFAR-10 JPEGs: 3 classes x 4 images x 2 splits."""
    root = tmp_path / "jpeg"
    for split in ("train", "test"):
        for cls in ("cat", "dog", "ship"):
            src = shared_data / "cifar10" / "jpeg" / split / cls
            (root / split / cls).mkdir(parents=True)
            for f in sorted(src.iterdir())[:4]:
                shutil.copy2(f, root / split / cls / f.name)
    return root


def test_imagefolder_split_layout_labels(jpeg_tree, tmp_path):
    """Labels follow the class folders (sorted names), ids are relative paths, images are path references."""
    table = _load("imagefolder", tmp_path, path=str(jpeg_tree))
    assert table.features["label"].names == ["cat", "dog", "ship"]
    assert len(table) == 24 and "path" in table.column_names
    names = table.features["label"].names
    for sample_id, label, split, path in zip(table["id"][:], table["label"][:], table["split"][:], table["path"][:]):
        s, cls, _ = sample_id.split("/")
        assert names[label] == cls and split == s and path == str(jpeg_tree / sample_id)
    first = decode_images(table, [0])[0]
    np.testing.assert_array_equal(first, np.asarray(Image.open(jpeg_tree / table[0]["id"]).convert("RGB")))


def test_imagefolder_skips_corrupt_files_with_one_warning(jpeg_tree, tmp_path, caplog):
    (jpeg_tree / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (jpeg_tree / "train" / "dog" / "notes.txt").write_text("ignored: not an image extension")
    with caplog.at_level(logging.WARNING, logger="curate.data.sources.imagefolder"):
        table = _load("imagefolder", tmp_path, path=str(jpeg_tree), split="train")
    assert len(table) == 12 and "train/dog/broken.jpg" not in table["id"][:]
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "skipped 1 unreadable image(s) of 13" in record.getMessage()
    assert "train/dog/broken.jpg" in record.getMessage()


def test_imagefolder_names_empty_class_folders_and_classes_without_images(jpeg_tree, tmp_path, caplog):
    """A class folder with no image (or a listed class with no folder) is named in one warning, not dropped
    without a word; a folder inside a class folder is not a class and is not reported."""
    (jpeg_tree / "test" / "frog").mkdir()
    (jpeg_tree / "train" / "cat" / "thumbs").mkdir()
    with caplog.at_level(logging.WARNING, logger="curate.data.sources.imagefolder"):
        table = _load("imagefolder", tmp_path, path=str(jpeg_tree), class_names=["cat", "dog", "frog", "ship", "yak"])
    assert len(table) == 24 and table.features["label"].names == ["cat", "dog", "frog", "ship", "yak"]
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.getMessage().endswith("class folder(s) without images, not read: test/frog; "
                                        "class(es) of `class_names` with no images: frog, yak")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="curate.data.sources.imagefolder"):
        _load("imagefolder", tmp_path / "again", path=str(jpeg_tree))
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "class folder(s) without images, not read: test/frog"]


def test_imagefolder_flat_layout_with_split_name(jpeg_tree, tmp_path):
    flat = jpeg_tree / "test"
    table = _load("imagefolder", tmp_path, path=str(flat), split="val", class_names=["ship", "dog", "cat"])
    assert set(table["split"][:]) == {"val"} and table[0]["id"].startswith(("cat/", "dog/", "ship/"))
    names = table.features["label"].names
    assert names == ["ship", "dog", "cat"]
    assert all(names[label] == sid.split("/")[0] for sid, label in zip(table["id"][:], table["label"][:]))


def test_imagefolder_leaves_the_source_untouched(jpeg_tree, tmp_path):
    """Loading, decoding and saving the table never writes into the source folder."""
    before = _snapshot(jpeg_tree)
    table = _load("imagefolder", tmp_path, path=str(jpeg_tree))
    decode_images(table)
    table.save_to_disk(str(tmp_path / "saved"))
    assert _snapshot(jpeg_tree) == before


def test_imagefolder_fingerprint_tracks_edits(jpeg_tree):
    config = _config("imagefolder", path=str(jpeg_tree))
    before = source_fingerprint(config)
    assert source_fingerprint(config) == before
    (jpeg_tree / "train" / "cat" / "00000.jpg").unlink(missing_ok=True)
    next(iter((jpeg_tree / "test" / "dog").iterdir())).unlink()
    assert source_fingerprint(config) != before


def test_imagefolder_errors_are_one_line(jpeg_tree, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UsageError) as info:
        _load("imagefolder", tmp_path, path=str(missing))
    _one_line(info, "`path`", missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError) as info:
        _load("imagefolder", tmp_path, path=str(empty))
    _one_line(info, "empty", empty)
    with pytest.raises(UsageError) as info:
        _load("imagefolder", tmp_path, path=str(jpeg_tree), class_names=["cat", "dog"])
    _one_line(info, "'ship'", "`class_names`")
    with pytest.raises(UsageError) as info:
        _load("imagefolder", tmp_path, path=str(jpeg_tree), split="val")
    _one_line(info, "`split` 'val'", "train")


# --- hf --------------------------------------------------------------------------------


def _foreign_dataset(n, offset=0):
    """A dataset shaped like a Hub one: its own column names, PIL images, a ClassLabel."""
    images = np.random.default_rng(offset).integers(0, 256, size=(n, 6, 5, 3), dtype=np.uint8)
    features = datasets.Features({"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=["x", "y"]),
                                  "uid": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in images], "fine_label": [i % 2 for i in range(n)],
                                     "uid": [f"u{offset + i}" for i in range(n)]}, features=features)
    return ds, images


def test_hf_save_to_disk_round_trip(tmp_path):
    """A saved DatasetDict loads with its columns mapped; pixels, labels and ids survive."""
    train, train_images = _foreign_dataset(5)
    test, test_images = _foreign_dataset(3, offset=100)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    table = _load("hf", tmp_path, path=str(tmp_path / "saved"), image_column="img", label_column="fine_label",
                  id_column="uid")
    assert table["id"][:] == [f"u{i}" for i in range(5)] + ["u100", "u101", "u102"]
    assert table["split"][:] == ["train"] * 5 + ["test"] * 3
    assert table["label"][:] == [0, 1, 0, 1, 0, 0, 1, 0]
    assert table.features["label"].names == ["x", "y"]
    np.testing.assert_array_equal(decode_images(table), np.concatenate([train_images, test_images]))
    only_test = _load("hf", tmp_path, path=str(tmp_path / "saved"), split="test", image_column="img",
                      label_column="fine_label")
    assert only_test["id"][:] == ["test/0", "test/1", "test/2"]


def test_hf_string_labels_and_bad_column(tmp_path):
    ds, _ = _foreign_dataset(4)
    ds = ds.cast_column("fine_label", datasets.Value("int64")).map(
        lambda r: {"name": ["cat", "dog"][r["fine_label"]]}).remove_columns("fine_label")
    ds.save_to_disk(str(tmp_path / "one"))
    table = _load("hf", tmp_path, path=str(tmp_path / "one"), image_column="img", label_column="name")
    assert table.features["label"].names == ["cat", "dog"] and table["label"][:] == [0, 1, 0, 1]
    with pytest.raises(UsageError) as info:
        _load("hf", tmp_path, path=str(tmp_path / "one"), image_column="img", label_column="name",
              class_names=["cat"])
    _one_line(info, "'dog'", "`class_names`")
    with pytest.raises(UsageError) as info:
        _load("hf", tmp_path, path=str(tmp_path / "one"), label_column="name")
    _one_line(info, "`image_column` 'image'", "img")


def test_hf_local_folder_caches_only_in_cache_dir(tmp_path, jpeg_tree):
    """A plain image folder goes through load_dataset, whose Arrow cache lands in cache_dir, not the source."""
    before = _snapshot(jpeg_tree)
    table = _load("hf", tmp_path, path=str(jpeg_tree), split="test")
    assert len(table) == 12 and table.features["label"].names == ["cat", "dog", "ship"]
    assert any((tmp_path / "cache" / "datasets").rglob("*.arrow"))
    assert _snapshot(jpeg_tree) == before


def test_hf_missing_path(tmp_path):
    with pytest.raises(UsageError) as info:
        _load("hf", tmp_path, path=str(tmp_path / "nope"))
    _one_line(info, "`path`", tmp_path / "nope")


# --- npz -------------------------------------------------------------------------------


def test_npz_file_with_ids(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, size=(4, 5, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([1, 0, 1, 2]), ids=np.array([10, 11, 12, 13]))
    table = _load("npz", tmp_path, path=str(tmp_path / "d.npz"), class_names=["a", "b", "c"], split="test")
    assert table["id"][:] == ["10", "11", "12", "13"] and table["split"][:] == ["test"] * 4
    np.testing.assert_array_equal(decode_images(table), images)


def test_npz_grayscale_prefix_layout(tmp_path):
    """A prefix of .npy files works, and grayscale (N, H, W) decodes to three equal channels."""
    gray = np.random.default_rng(4).integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "mnist_images.npy", gray)
    np.save(tmp_path / "mnist_labels.npy", np.array([0, 1, 0]))
    (tmp_path / "classes.json").write_text(json.dumps(["zero", "one"]))
    table = _load("npz", tmp_path, path=str(tmp_path / "mnist_"), classes_file=str(tmp_path / "classes.json"))
    assert table["id"][:] == ["train/0", "train/1", "train/2"]
    np.testing.assert_array_equal(decode_images(table), np.repeat(gray[..., None], 3, axis=-1))


def test_npz_shared_folder_is_lossless_and_untouched(tmp_path, shared_data):
    test = shared_data / "cifar10" / "test"
    before = _snapshot(test)
    table = _load("npz", tmp_path, path=str(test), classes_file=str(shared_data / "cifar10" / "classes.json"),
                  split="test")
    assert len(table) == 932 and table.features["label"].names == CIFAR_CLASSES
    np.testing.assert_array_equal(decode_images(table, [0, 931]), np.load(test / "images.npy")[[0, 931]])
    assert _snapshot(test) == before


def test_npz_errors_are_one_line(tmp_path):
    images = np.zeros((3, 2, 2, 3), np.uint8)
    np.savez(tmp_path / "bad.npz", images=images, labels=np.array([0, 12, 1]))
    with pytest.raises(UsageError) as info:
        _load("npz", tmp_path, path=str(tmp_path / "bad.npz"), class_names=[str(i) for i in range(10)])
    _one_line(info, "label 12", "bad.npz")
    np.savez(tmp_path / "empty.npz", images=images[:0], labels=np.array([], np.int64))
    with pytest.raises(UsageError) as info:
        _load("npz", tmp_path, path=str(tmp_path / "empty.npz"), class_names=["a"])
    _one_line(info, "empty", "empty.npz")
    with pytest.raises(UsageError) as info:
        _load("npz", tmp_path, path=str(tmp_path / "missing.npz"), class_names=["a"])
    _one_line(info, "`path`", "missing.npz")
    np.savez(tmp_path / "float.npz", images=images.astype(np.float32), labels=np.array([0, 0, 0]))
    with pytest.raises(UsageError) as info:
        _load("npz", tmp_path, path=str(tmp_path / "float.npz"), class_names=["a"])
    _one_line(info, "`images`", "float32")
    np.savez(tmp_path / "pickled.npz", images=images, labels=np.array([0, 0, 0]), ids=np.array([{}, {}, {}]))
    with pytest.raises(UsageError) as info:
        _load("npz", tmp_path, path=str(tmp_path / "pickled.npz"), class_names=["a"])
    _one_line(info, "pickled.npz")


def test_npz_needs_exactly_one_class_list():
    with pytest.raises(ConfigError, match="class_names"):
        _config("npz", path="x.npz")
    with pytest.raises(ConfigError, match="class_names"):
        _config("npz", path="x.npz", class_names=["a"], classes_file="c.json")
