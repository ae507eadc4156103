"""Bad input through the CLI: each case ends in one line naming the file, line or field (exit 2 for the
user's input, 1 for the machine), never a traceback, and no partial output."""

import errno
import os
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from curate.cli import cli
from reliability_helpers import EMBED

SOURCE = """\
name: bad
steps:
  - id: images
    uses: source
    with: {kind: imagefolder, path: pics}
"""
CASES = {
    "a class with one image under cross-validation": (SOURCE + EMBED + """\
  - id: probe
    uses: predict
    inputs: {data: images, embeddings: embed}
    with: {probe: linear, folds: 2}
""", 2, "class 2: its 1 row is in fold 0 alone"),
    "weights that are a pickle": (SOURCE + """\
  - id: scores
    uses: predict
    inputs: {data: images}
    with: {model: convnet, weights: evil.pt}
""", 2, "is refused: it holds more than tensors"),
    "a step id that climbs out of the run directory": (SOURCE.replace("id: images", "id: ../images"), 2,
                                                        "bad.yaml:3: step '../images': `id` must be a folder-safe"),
    "a recipe name that climbs out of the work folder": (SOURCE.replace("name: bad", "name: ../../bad"), 2,
                                                          "bad.yaml:1: `name` must be a folder-safe name"),
    "an unknown class folder": (SOURCE.replace("path: pics}", "path: pics, class_names: [a, b]}"), 2,
                                "class folder 'c' is not in `class_names`"),
}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for name, n in (("a", 4), ("b", 4), ("c", 1)):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "pics" / name / f"{i}.png")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"weights": ValueError("not a tensor")}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_line_error(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_ends_in_one_line_naming_it(case, folder):
    text, code, expected = CASES[case]
    (folder / "bad.yaml").write_text(text)
    result = CliRunner().invoke(cli, ["run", "bad.yaml", "--workdir", "runs", "--quiet"])
    assert result.exit_code == code, result.output
    assert expected in one_line_error(result.output)
    assert not list((folder / "runs").rglob("*.tmp*"))


def test_a_full_disk_during_a_write_names_the_file_and_leaves_no_partial_output(folder, monkeypatch):
    from curate import workspace

    real_fsync = os.fsync

    def full(fd):  # the disk fills while the step's metrics are flushed
        if ".metrics." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(workspace.os, "fsync", full)
    (folder / "bad.yaml").write_text(SOURCE)
    result = CliRunner().invoke(cli, ["run", "bad.yaml", "--workdir", "runs", "--quiet"])
    assert result.exit_code == 1, result.output
    line = one_line_error(result.output)
    assert "No space left on device" in line and "images/metrics.json" in line, line
    step = folder / "runs" / "bad" / "images"
    assert not (step / "step.json").exists() and not list(step.rglob("*.tmp*"))
    assert sorted(p.name for p in (folder / "pics").iterdir()) == ["a", "b", "c"]
