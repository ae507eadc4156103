"""The local executor: setup once, every selected row once, outputs in selection order."""

import numpy as np
import pytest
from learn_data import separable_images

from curate.data import make_table
from curate.errors import UsageError
from curate.execute import EXECUTORS
from curate.execute.local import array_batches, map_batches, run_batches


class Recorder:
    """Returns each batch's table positions and a per-image pixel sum, and counts setups."""

    def __init__(self):
        self.setups = 0
        self.batch_sizes = []

    def setup(self):
        self.setups += 1

    def __call__(self, batch):
        self.batch_sizes.append(len(batch["image"]))
        return {"row": batch["index"], "pixels": batch["image"].reshape(len(batch["image"]), -1).sum(1)}


@pytest.fixture
def table_and_images():
    images, labels = separable_images(23, seed=1)
    table = make_table(ids=[f"s{i}" for i in range(23)], images=images, labels=labels,
                       class_names=["a", "b", "c"], splits="train")
    return table, images


def test_every_row_once_in_order_with_one_setup(table_and_images):
    table, images = table_and_images
    fn = Recorder()
    out = run_batches(fn, table, batch_size=5, progress=False)
    np.testing.assert_array_equal(out["row"], np.arange(23))
    np.testing.assert_array_equal(out["pixels"], images.reshape(23, -1).sum(1))
    assert fn.setups == 1 and fn.batch_sizes == [5, 5, 5, 5, 3]


def test_indices_select_and_order_the_output(table_and_images):
    table, images = table_and_images
    indices = np.random.default_rng(0).permutation(23)[:17]
    out = run_batches(Recorder(), table, batch_size=4, indices=indices, progress=False)
    np.testing.assert_array_equal(out["row"], indices)
    np.testing.assert_array_equal(out["pixels"], images[indices].reshape(17, -1).sum(1))


def test_outputs_keep_their_dtype_and_trailing_shape():
    fn = lambda batch: {"x": np.ones((len(batch["image"]), 2, 3), np.float16)}  # noqa: E731
    fn.setup = lambda: None
    out = map_batches(fn, array_batches(np.zeros((7, 2, 2, 3), np.uint8), batch_size=3), rows=7)
    assert out["x"].shape == (7, 2, 3) and out["x"].dtype == np.float16


def test_a_batch_function_returning_the_wrong_row_count_is_caught():
    fn = lambda batch: {"x": np.ones(1)}  # noqa: E731
    fn.setup = lambda: None
    with pytest.raises(ValueError, match="returned 1 rows of `x` for a batch of 3"):
        map_batches(fn, array_batches(np.zeros((6, 2, 2, 3), np.uint8), batch_size=3), rows=6)


def test_an_empty_selection_is_a_usage_error(table_and_images):
    table, _ = table_and_images
    with pytest.raises(UsageError, match="0 rows"):
        run_batches(Recorder(), table, batch_size=4, indices=np.array([], dtype=np.int64), progress=False)


def test_executors_registry_names_local():
    assert EXECUTORS.get("local") is run_batches


def test_choosing_ray_without_it_installed_gives_the_install_hint():
    try:
        import ray  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("ray is installed")
    with pytest.raises(UsageError, match=r"pip install 'curate-toolkit\[ray\]'"):
        EXECUTORS.get("ray")
