"""A messy real folder: unreadable files are skipped, counted and listed; odd but valid images decode as a
viewer shows them; nothing in the folder changes."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from curate.cli import cli
from curate.data.images import decode_images
from curate.data.table import make_table
from reliability_helpers import EMBED, folder_recipe, tree_digest

rng = np.random.default_rng(0)
RGB = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
GRADIENT = np.repeat(np.repeat((np.arange(32) * 8).astype(np.uint8)[:, None], 16, axis=1)[..., None], 3, axis=2)

UNREADABLE = ["a/truncated.jpg", "a/truncated.png", "a/empty.png", "a/text.jpg", "b/loop1.png", "b/loop2.png",
              "b/dangling.png", "b/bomb.png"]
ODD_BUT_VALID = ["a/gray.png", "a/rgba.png", "a/deep16.png", "a/palette.png", "a/cmyk.jpg", "a/rotated.jpg",
                 "b/chat noir é.png", "b/linked.png", "b/one.png"]


def messy_folder(root: Path) -> None:
    """Every unreadable and odd-but-valid case of the bad-input sweep, plus a non-image file."""
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    Image.fromarray(RGB).save(root / "b" / "one.png")
    Image.fromarray(RGB).save(root / "a" / "full.jpg")
    Image.fromarray(RGB).save(root / "a" / "full.png")
    (root / "a" / "truncated.jpg").write_bytes((root / "a" / "full.jpg").read_bytes()[:-200])
    (root / "a" / "truncated.png").write_bytes((root / "a" / "full.png").read_bytes()[:-300])
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "a" / "text.jpg").write_text("not an image")
    (root / "a" / "notes.txt").write_text("a non-image file in a class folder is not an input")
    os.symlink("loop2.png", root / "b" / "loop1.png")
    os.symlink("loop1.png", root / "b" / "loop2.png")
    os.symlink("nowhere.png", root / "b" / "dangling.png")
    Image.fromarray(np.zeros((600, 600, 3), np.uint8)).save(root / "b" / "bomb.png")  # over the limit set below
    Image.fromarray(RGB[..., 0]).save(root / "a" / "gray.png")
    Image.fromarray(np.dstack([RGB, np.full((32, 32), 200, np.uint8)])).save(root / "a" / "rgba.png")
    Image.fromarray((RGB[..., 0].astype(np.uint16) * 257)).save(root / "a" / "deep16.png")
    Image.fromarray(RGB).convert("P").save(root / "a" / "palette.png")
    Image.fromarray(RGB).convert("CMYK").save(root / "a" / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: a viewer rotates it 90 degrees clockwise
    Image.fromarray(GRADIENT).save(root / "a" / "rotated.jpg", exif=exif, quality=95)
    Image.fromarray(RGB).save(root / "b" / "chat noir é.png")
    os.symlink(root / "b" / "one.png", root / "b" / "linked.png")
    (root / "a" / "full.jpg").unlink()
    (root / "a" / "full.png").unlink()


def test_a_messy_folder_runs_with_its_unreadable_files_counted_and_listed(tmp_path, monkeypatch):
    root = tmp_path / "my photos"
    messy_folder(root)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # bomb.png (360,000 px) is over twice the limit
    before = tree_digest(root)
    recipe = tmp_path / "messy.yaml"
    recipe.write_text(folder_recipe("messy", root, EMBED))
    result = CliRunner().invoke(cli, ["run", str(recipe), "--workdir", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 0, result.output
    step = tmp_path / "runs" / "messy" / "images"
    metrics = json.loads((step / "step.json").read_text())["metrics"]
    assert metrics["skipped"] == len(UNREADABLE) and metrics["rows"] == len(ODD_BUT_VALID)
    listed = dict(line.split("\t") for line in (step / "skipped.txt").read_text(encoding="utf-8").splitlines())
    assert sorted(listed) == sorted(UNREADABLE)
    assert "decompression-bomb" in listed["b/bomb.png"] and "symbolic links" in listed["b/loop1.png"]
    assert all(reason for reason in listed.values())
    ids = np.load(tmp_path / "runs" / "messy" / "embed" / "embeddings.ids.npy")
    assert sorted(ids.tolist()) == sorted(ODD_BUT_VALID)
    from curate.steps import create_step

    assert f"{len(UNREADABLE)} unreadable skipped (skipped.txt)" in create_step("source").headline(metrics)
    assert tree_digest(root) == before


def test_odd_images_decode_as_a_viewer_shows_them(tmp_path):
    root = tmp_path / "odd"
    messy_folder(root)
    names = ["a/deep16.png", "a/rotated.jpg", "a/cmyk.jpg", "a/rgba.png", "b/chat noir é.png"]
    table = make_table(ids=names, images=[root / n for n in names], labels=[0] * len(names), class_names=["a"],
                       splits="train")
    deep, rotated = (decode_images(table, [i])[0] for i in (0, 1))
    assert np.abs(deep[..., 0].astype(int) - RGB[..., 0]).max() <= 1  # 16-bit scaled, not clipped to white
    assert rotated.shape == (16, 32, 3)  # stored 32 high x 16 wide with orientation 6: shown 16 x 32
    assert np.abs(rotated.astype(int) - np.rot90(GRADIENT, k=-1)).max() <= 8  # JPEG error only
    out = decode_images(table, [2, 3, 4])
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("loop_dir", [False, True])
def test_symlink_loops_do_not_hang_the_scan_or_the_fingerprint(tmp_path, loop_dir):
    from curate.data import source_config_class, source_fingerprint

    root = tmp_path / "root"
    messy_folder(root)
    if loop_dir:  # a folder link back to the root: the scan reads two levels, never follows it further
        os.symlink(root, root / "a" / "back")
    config = source_config_class("imagefolder")(path=root)
    assert source_fingerprint(config) == source_fingerprint(config)
