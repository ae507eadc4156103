"""Image decoding for model steps: RGB uint8 arrays, resizing, row order, batching."""

import numpy as np
import pytest
from PIL import Image

from curate.data.images import decode_images, iter_image_batches
from curate.data.table import make_table
from curate.errors import UsageError

rng = np.random.default_rng(1)


def _array_table(n, h=5, w=4):
    images = rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    table = make_table(ids=[f"x/{i}" for i in range(n)], images=images, labels=np.arange(n) % 2,
                       class_names=["a", "b"], splits="train")
    return table, images


def _file_table(tmp_path, pictures):
    files = []
    for i, pic in enumerate(pictures):
        files.append(tmp_path / f"{i}.png")
        pic.save(files[-1])
    return make_table(ids=[str(i) for i in range(len(files))], images=files, labels=[0] * len(files),
                      class_names=["a"], splits="train")


def test_modes_are_converted_to_rgb(tmp_path):
    """Grayscale, RGBA and palette files all decode to (N, H, W, 3) uint8 with the right colours."""
    gray = Image.fromarray(np.full((3, 3), 70, np.uint8))
    rgba = Image.fromarray(np.full((3, 3, 4), [10, 20, 30, 40], np.uint8), "RGBA")
    palette = Image.fromarray(np.full((3, 3, 3), [200, 0, 0], np.uint8)).convert("P", palette=Image.ADAPTIVE)
    out = decode_images(_file_table(tmp_path, [gray, rgba, palette]))
    assert out.dtype == np.uint8 and out.shape == (3, 3, 3, 3)
    assert out[0, 0, 0].tolist() == [70, 70, 70]
    assert out[1, 0, 0].tolist() == [10, 20, 30]
    assert out[2, 0, 0].tolist() == [200, 0, 0]


def test_size_resizes_and_mismatch_is_an_error(tmp_path):
    """Mixed sizes need `size=(height, width)`; with it every image comes out at that size."""
    small = Image.fromarray(np.full((4, 6, 3), 9, np.uint8))  # 4 high, 6 wide
    big = Image.fromarray(np.full((8, 12, 3), 9, np.uint8))
    table = _file_table(tmp_path, [small, big])
    with pytest.raises(UsageError, match=r"4x6 at row 0, 8x12 at row 1.*size="):
        decode_images(table)
    out = decode_images(table, size=(4, 6))
    assert out.shape == (2, 4, 6, 3) and (out == 9).all()
    assert decode_images(table, size=(5, 3)).shape == (2, 5, 3, 3)


def test_unstacked_batches_keep_each_image_at_its_own_size(tmp_path):
    """`stack=False`: mixed sizes come back as a list of arrays, in row order, without resizing."""
    pictures = [Image.fromarray(np.full((h, w, 3), v, np.uint8)) for h, w, v in ((4, 6, 1), (8, 12, 2), (4, 6, 3))]
    table = _file_table(tmp_path, pictures)
    batches = list(iter_image_batches(table, batch_size=2, stack=False))
    images = [image for b in batches for image in b["image"]]
    assert [im.shape for im in images] == [(4, 6, 3), (8, 12, 3), (4, 6, 3)]
    assert [int(im[0, 0, 0]) for im in images] == [1, 2, 3] and all(im.dtype == np.uint8 for im in images)


def test_indices_pick_rows_in_the_given_order():
    table, images = _array_table(7)
    np.testing.assert_array_equal(decode_images(table, [6, 0, 3]), images[[6, 0, 3]])
    assert decode_images(table, [], size=(3, 2)).shape == (0, 3, 2, 3)
    with pytest.raises(ValueError, match=r"0..6"):
        decode_images(table, [7])


def test_unreadable_file_names_the_row_and_path(tmp_path):
    table = _file_table(tmp_path, [Image.new("RGB", (2, 2))] * 2)
    (tmp_path / "1.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match=r"row 1 \(file .*1.png\)"):
        decode_images(table)


@pytest.mark.parametrize("workers", [1, 3])
def test_batches_cover_every_row_once_in_order(workers):
    """Concatenated batches equal the table: indices, ids, labels and pixels, with the right shapes."""
    table, images = _array_table(11)
    batches = list(iter_image_batches(table, batch_size=4, workers=workers))
    assert [len(b["id"]) for b in batches] == [4, 4, 3]
    for b in batches:
        assert b["index"].dtype == np.int64 and b["label"].dtype == np.int64
        assert b["image"].dtype == np.uint8 and b["image"].shape == (len(b["id"]), 5, 4, 3)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), np.arange(11))
    assert sum((b["id"] for b in batches), []) == [f"x/{i}" for i in range(11)]
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), np.arange(11) % 2)
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), images)


def test_batches_follow_given_indices_and_size():
    table, images = _array_table(9)
    batches = list(iter_image_batches(table, batch_size=2, indices=[8, 1, 4], size=(10, 8)))
    assert np.concatenate([b["index"] for b in batches]).tolist() == [8, 1, 4]
    assert sum((b["id"] for b in batches), []) == ["x/8", "x/1", "x/4"]
    assert batches[0]["image"].shape == (2, 10, 8, 3)


def test_batches_of_a_select_view_use_view_rows():
    """Row indices refer to the table as given (a select()ed view), not to the underlying Arrow file."""
    table, images = _array_table(6)
    view = table.select([5, 3, 1])
    (batch,) = iter_image_batches(view, batch_size=8)
    assert batch["id"] == ["x/5", "x/3", "x/1"]
    np.testing.assert_array_equal(batch["image"], images[[5, 3, 1]])
