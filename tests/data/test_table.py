"""The sample table: schema, lossless storage, validation errors, and what save_to_disk keeps."""

import shutil

import datasets
import numpy as np
import pytest
from PIL import Image

from curate.data.images import decode_images
from curate.data.table import make_table, validate_table
from curate.errors import UsageError

rng = np.random.default_rng(0)


def _table(n=6, **overrides):
    kwargs = dict(
        ids=[f"s{i}" for i in range(n)],
        images=rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8),
        labels=np.arange(n) % 3,
        class_names=["a", "b", "c"],
        splits="train",
    )
    kwargs.update(overrides)
    return make_table(**kwargs)


def test_schema_columns_and_types():
    """The table carries the contract columns, with the class names in a ClassLabel."""
    table = _table()
    assert table.column_names == ["id", "image", "label", "split", "set"]
    assert isinstance(table.features["image"], datasets.Image)
    assert table.features["label"].names == ["a", "b", "c"]
    assert table["split"][:] == ["train"] * 6 and table["set"][:] == ["real"] * 6
    validate_table(table, where="test")


@pytest.mark.parametrize("shape", [(5, 7, 9, 3), (5, 7, 9), (5, 7, 9, 1)])
def test_arrays_are_stored_losslessly(shape):
    """RGB and grayscale arrays come back bit-exact (grayscale as three equal channels)."""
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    table = _table(5, images=images, labels=[0, 1, 2, 0, 1])
    decoded = decode_images(table)
    expected = images.reshape(5, 7, 9, -1)
    np.testing.assert_array_equal(decoded, np.broadcast_to(expected, (5, 7, 9, 3)))


def test_paths_are_references_not_copies(tmp_path):
    """File images are stored as absolute path references (no bytes), and the path column keeps them."""
    files = []
    for i in range(3):
        f = tmp_path / f"{i}.png"
        Image.fromarray(np.full((4, 4, 3), i * 50, np.uint8)).save(f)
        files.append(f)
    table = _table(3, images=files, labels=[0, 1, 2], paths=files)
    storage = table.with_format("arrow")["image"].to_pylist()
    assert [s["bytes"] for s in storage] == [None] * 3
    assert [s["path"] for s in storage] == [str(f) for f in files] == table["path"][:]
    assert decode_images(table)[:, 0, 0, 0].tolist() == [0, 50, 100]


def test_save_to_disk_embeds_path_images(tmp_path):
    """datasets 5.x save_to_disk embeds referenced files, so a saved table loads without its source."""
    src = tmp_path / "src"
    src.mkdir()
    images = rng.integers(0, 256, size=(2, 6, 6, 3), dtype=np.uint8)
    files = [src / "x.png", src / "y.png"]
    for f, im in zip(files, images):
        Image.fromarray(im).save(f)
    _table(2, images=files, labels=[0, 1], paths=files).save_to_disk(str(tmp_path / "saved"))
    shutil.rmtree(src)
    loaded = datasets.load_from_disk(str(tmp_path / "saved"))
    np.testing.assert_array_equal(decode_images(loaded), images)
    assert loaded["path"][:] == [str(f) for f in files]  # provenance survives in the path column


def test_make_table_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="`labels` has 2 rows but `ids` has 6"):
        _table(labels=[0, 1])


def _one_line_error(table, match):
    with pytest.raises(UsageError, match=match) as info:
        validate_table(table, where="npz source '/data/x.npz'")
    assert "\n" not in str(info.value) and "/data/x.npz" in str(info.value)


def test_validate_empty_names_the_source():
    _one_line_error(_table(0), "empty")


def test_validate_label_outside_class_list():
    """A label >= K (or < 0) is reported with the value and the sample id."""
    _one_line_error(_table(labels=[0, 1, 2, 7, 0, 1]), r"label 7 of sample 's3' is outside the class list \(0..2")
    _one_line_error(_table(labels=[0, -1, 2, 0, 0, 1]), "label -1 of sample 's1'")


def test_validate_duplicate_ids():
    _one_line_error(_table(ids=["a", "b", "a", "c", "b", "a"]), "'a' appears 3 times")


def test_validate_sees_through_select():
    """Validation reads rows in table order, so a select()ed view is judged on its own rows."""
    table = _table(labels=[0, 1, 2, 9, 0, 1])
    validate_table(table.select([0, 1, 2]), where="view")
    with pytest.raises(UsageError, match="sample 's3'"):
        validate_table(table.select([3]), where="view")


def _generated(ids, **overrides):
    from curate.data.table import generated_rows

    kwargs = dict(ids=ids, images=rng.integers(0, 256, size=(len(ids), 8, 8, 3), dtype=np.uint8),
                  labels=np.arange(len(ids)) % 3, class_names=["a", "b", "c"], split="train", set_="synthetic",
                  method="m", parameters={"b": 2, "a": 1}, source_step="gen", seeds=np.arange(len(ids)) + 10)
    kwargs.update(overrides)
    return generated_rows(**kwargs)


def test_generated_rows_carry_the_same_provenance_columns_for_every_producer():
    from curate.data.table import PROVENANCE

    rows = _generated(["g0", "g1"], extra={"filter_confidence": (np.array([0.5, 0.25]), "float32")})
    assert set(PROVENANCE) <= set(rows.column_names) and rows["set"] == ["synthetic"] * 2
    assert rows["parameters"] == ['{"a": 1, "b": 2}'] * 2  # sorted JSON: equal settings compare equal
    assert rows["seed"] == [10, 11] and rows["source_step"] == ["gen", "gen"] and rows["filter_confidence"] == [0.5, 0.25]
    with pytest.raises(ValueError, match="collides"):
        _generated(["g0"], extra={"seed": ([1], "int64")})


def test_new_table_version_keeps_rows_rewrites_columns_appends_rows_and_leaves_the_base_alone(tmp_path):
    from curate.data.table import new_table_version

    base = _table(6)
    before = base.to_dict()
    version = new_table_version(
        base, keep=np.array([0, 2, 5]), scratch=tmp_path / "scratch",
        columns={"label": (np.array([2, 2, 2]), base.features["label"]),
                 "review": (np.array(["x", "", "y"]), datasets.Value("string"))},
        add=_generated(["g0", "g1"]), where="test")
    assert version["id"] == ["s0", "s2", "s5", "g0", "g1"]
    assert version["label"][:3] == [2, 2, 2] and version["review"] == ["x", "", "y", None, None]
    assert version["method"] == [None, None, None, "m", "m"] and version["set"][-2:] == ["synthetic"] * 2
    assert base.to_dict() == before and "review" not in base.column_names


def test_new_table_version_refuses_clashing_ids_and_other_classes():
    from curate.data.table import new_table_version

    base = _table(3)
    with pytest.raises(UsageError, match="1 new row ids already exist.*'s1'"):
        new_table_version(base, add=_generated(["s1"]), where="step 'x'")
    with pytest.raises(UsageError, match="classes differ"):
        new_table_version(base, add=_generated(["g0"], class_names=["a", "b", "z"]), where="step 'x'")
