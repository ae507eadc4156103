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
