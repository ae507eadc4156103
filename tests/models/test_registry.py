"""create_model / load_model: names, options and saved configs fail or warn clearly."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from curate.errors import UnknownName, UsageError
from curate.models import create_model, list_models, load_model, save_model


def test_unknown_name_lists_names_and_suggests_the_closest():
    with pytest.raises(UnknownName) as err:
        create_model("resnet20-cifr")
    message = str(err.value)
    assert "did you mean 'resnet20-cifar'" in message
    assert all(name in message for name in list_models())


def test_unknown_prefix_is_an_unknown_name_and_empty_source_is_explained():
    with pytest.raises(UnknownName, match="unknown model 'timm:resnet50'"):
        create_model("timm:resnet50")
    with pytest.raises(UsageError, match="needs a source after 'hf:'"):
        create_model("hf:")


def test_class_names_must_match_num_classes():
    with pytest.raises(UsageError, match="`class_names` has 2 names but `num_classes` is 10"):
        create_model("convnet", class_names=["a", "b"])


def test_num_classes_must_be_positive():
    with pytest.raises(UsageError, match="`num_classes` must be an integer >= 1, got 0"):
        create_model("convnet", num_classes=0)


def test_load_model_warns_on_unknown_config_keys(tmp_path, caplog):
    save_model(create_model("convnet", width=8, depth=1, seed=0), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "future_field": 1}))
    with caplog.at_level(logging.WARNING, logger="curate.models.registry"):
        model = load_model(tmp_path)
    assert model.cfg["width"] == 8
    assert "future_field" in caplog.text


def test_load_model_on_a_folder_without_config_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="config.json is missing"):
        load_model(tmp_path)


def test_importing_curate_models_does_not_import_transformers():
    code = "import sys, curate.models; sys.exit('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- head_trained: whether the classifier head was trained for these classes ---------------------

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.parametrize(("kwargs", "trained"), [
    ({"num_classes": 10}, True),                                          # bundled CIFAR-10 head
    ({"num_classes": 10, "class_names": CIFAR}, True),                    # ... for a table of these names
    ({"num_classes": 3, "class_names": ["cat", "dog", "owl"]}, False),    # backbone + new 3-class head
    ({"num_classes": 10, "class_names": [f"c{i}" for i in range(10)]}, False),  # 10 classes, other names
    ({"num_classes": 10, "class_names": CIFAR[::-1]}, False),             # CIFAR names in another order
    ({"num_classes": 10, "weights": None}, False),                        # random init
])
def test_resnet20_head_is_trained_only_for_cifar10_classes(kwargs, trained):
    assert create_model("resnet20-cifar", seed=0, **kwargs).head_trained is trained


def test_a_model_without_bundled_weights_has_an_untrained_head():
    assert create_model("convnet", width=8, depth=1, seed=0).head_trained is False


def test_weights_from_a_file_and_a_saved_model_count_as_trained(tmp_path):
    """A saved trained model reloads with a trained head for the names saved with it, even where the
    architecture's bundled head would be for other classes; a saved untrained head (a self-supervised
    backbone) reloads untrained."""
    names = [f"c{i}" for i in range(10)]
    model = create_model("resnet20-cifar", weights=None, class_names=names, seed=0)
    assert model.head_trained is False
    save_model(model, tmp_path / "untrained")
    assert load_model(tmp_path / "untrained").head_trained is False
    model.head_trained = True  # as curate.learn.fit leaves it
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.head_trained is True and loaded.class_names == names
    again = create_model("resnet20-cifar", weights=tmp_path / "weights.safetensors", class_names=names)
    assert again.head_trained is True
