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
        n = len(batch["image"])
        return {"row": batch["index"], "pixels": batch["image"].reshape(n, -1).sum(1),
                "setups": np.full(n, self.setups)}


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


@pytest.mark.parametrize("name", EXECUTORS.names())
def test_executor_contract_every_selected_row_once_in_selection_order(name, table_and_images, request):
    """Every registered executor: setup once per worker (never per batch), each selected row exactly once,
    outputs in selection order, the same for any batch size (a new executor is tested by registering it)."""
    if name == "ray":
        request.getfixturevalue("ray_cluster")
    table, images = table_and_images
    run = EXECUTORS.get(name)
    picked = np.array([20, 3, 7, 0, 11, 12, 5])
    outputs = []
    for batch_size in (1, 3, 64):
        out = run(Recorder(), table, batch_size=batch_size, indices=picked, size=None, progress=False)
        assert (out["setups"] == 1).all()
        np.testing.assert_array_equal(out["row"], picked)
        np.testing.assert_array_equal(out["pixels"], images[picked].reshape(len(picked), -1).sum(1))
        outputs.append(out)
    assert all(np.array_equal(o["pixels"], outputs[0]["pixels"]) for o in outputs)


def test_predict_and_embed_run_their_batch_function_through_the_given_executor(table_and_images):
    from curate.learn import embed, predict
    from curate.models import create_model

    table, _ = table_and_images
    calls = []

    def counting(fn, table, **kwargs):
        calls.append(type(fn).__name__)
        return run_batches(fn, table, **kwargs)

    model = create_model("convnet", num_classes=3, weights=None, width=8, depth=1, seed=0)
    probs = predict(model, table, batch_size=8, device="cpu", progress=False, executor=counting)
    vectors = embed(model, table, batch_size=8, device="cpu", progress=False, executor=counting)
    assert calls == ["PredictFn", "EmbedFn"] and probs.shape == (23, 3) and len(vectors) == 23
    np.testing.assert_allclose(probs, predict(model, table, batch_size=8, device="cpu", progress=False), atol=1e-6)
