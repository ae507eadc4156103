"""Crash safety and source protection across every step kind: one recipe uses each kind once on a small
read-only image folder; the run is killed (a simulated crash at an atomic commit) at the first and the last
commit (``step.json``) of every step in turn, and at a middle one too in the ``slow`` variant, and resumed
each time. The finished run must equal an
uninterrupted one output by output, the FiftyOne dataset must hold each sample once, and the image folder
must be byte-for-byte what it was."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curate.recipes import parse_recipe, run_recipe
from curate.steps import STEPS
from reliability_helpers import EMBED, PROBE_AUDIT, QUALITY_INDEX_DUPLICATES, folder_recipe, tree_digest

TRAINING = """\
  - id: teacher
    uses: predict
    inputs: {data: images}
    with: {model: resnet20-cifar, split: test}
  - id: train
    uses: train
    inputs: {data: images}
    with: {model: convnet, model_config: {width: 8, depth: 1}, epochs: 1, batch_size: 16}
  - id: ssl
    uses: ssl
    inputs: {data: images}
    with: {model: convnet, model_config: {width: 8, depth: 1}, epochs: 2, batch_size: 8, split: null}
"""
CLEAN = """\
  - id: clean
    uses: audit_apply
    inputs: {data: images, audit: audit}
    with: {action: drop, unreviewed: apply}
"""
GENERATION_AND_EXPORT = """\
  - id: relabel
    uses: relabel
    inputs: {data: images}
    with: {model: resnet20-cifar, shard_size: 8}
  - id: condense
    uses: condense
    inputs: {data: images}
    with: {method: dm, ipc: 1, iterations: 3, model_config: {width: 8, depth: 2}, options: {batch_real: 4},
           checkpoint_every: 1, evaluate: {runs: 1, epochs: 1}}
  - id: ddpm
    uses: train_diffusion
    inputs: {data: images}
    with: {image_size: 8, block_out_channels: [4, 8], steps: 3, batch_size: 4, checkpoint_every: 1}
  - id: sieve
    uses: train
    inputs: {data: images}
    with: {model: convnet, model_config: {width: 8, depth: 1, im_size: 8}, epochs: 1, batch_size: 16}
  - id: gen
    uses: synth
    inputs: {data: images, diffusion: ddpm, filter: sieve}
    with: {per_class: 1, guidance_scale: 1.0, num_inference_steps: 2, noisy_steps: 2, noisy_width: 8,
           min_confidence: 0.0, min_copy_distance: 0.0}
  - id: compare
    uses: compare
    inputs: {runs: [teacher, train]}
  - id: export
    uses: export
    inputs: {data: condense}
    with: {license: other}
  - id: fiftyone
    uses: fiftyone
    inputs: {data: images, predictions: [teacher], embeddings: [embed]}
"""

def image_folder(root: Path) -> None:
    """root/<split>/<class>/*.png: the 10 bundled CIFAR-10 classes, 3 train and 2 test images each."""
    from curate.data.sources.demo import DEMO_DIR

    data = np.load(DEMO_DIR / "cifar10_demo.npz", allow_pickle=False)
    classes = json.loads((DEMO_DIR / "classes.json").read_text())
    for split, n in (("train", 3), ("test", 2)):
        images, labels = data[f"{split}_images"], data[f"{split}_labels"]
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i, row in enumerate(np.flatnonzero(labels == classes.index(name))[:n]):
                Image.fromarray(images[row]).save(root / split / name / f"{i}.png")


def read_only(root: Path, *, on: bool) -> None:
    """Take write permission off (or give it back to) the whole tree, as a shared read-only mount would."""
    for dirpath, _, filenames in os.walk(root):
        for p in [Path(dirpath), *(Path(dirpath) / f for f in filenames)]:
            mode = p.stat().st_mode
            p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) if on else mode | stat.S_IWUSR)


def outputs(run_dir: Path, step: str) -> dict[str, str]:
    manifest = json.loads((run_dir / step / "step.json").read_text())
    return {name: entry["fingerprint"] for name, entry in manifest["outputs"].items()}


METHODS = """\
  - id: recovered
    uses: condense
    inputs: {data: images}
    with: {method: cda, ipc: 1, iterations: 2, teacher: {model: resnet20-cifar}, model_config: {width: 8, depth: 2},
           evaluate: {runs: 1, kd: {epochs: 1, batch_size: 8}, relabel: stored}}
  - id: ssl
    uses: ssl
    inputs: {data: images}
    with: {model: convnet, model_config: {width: 8, depth: 1}, epochs: 1, batch_size: 8, split: null}
  - id: ssl_embed
    uses: embed
    inputs: {data: images, model: ssl}
  - id: conditioned
    uses: train_diffusion
    inputs: {data: images, embeddings: ssl_embed}
    with: {image_size: 8, block_out_channels: [4, 8], attention_levels: [1], steps: 2, batch_size: 4,
           class_conditional: false, context_dim: 8, checkpoint_every: 1}
  - id: sieve
    uses: train
    inputs: {data: images}
    with: {model: convnet, model_config: {width: 8, depth: 1, im_size: 8}, epochs: 1, batch_size: 16}
  - id: variations
    uses: synth
    inputs: {data: images, diffusion: conditioned, filter: sieve}
    with: {method: ssl_conditioned, per_class: 1, variations_per_image: 1, num_inference_steps: 2,
           min_confidence: 0.0, min_copy_distance: 0.0, panorama_references: 1, panorama_grid: 2}
  - id: t2i
    uses: train_diffusion
    inputs: {data: images}
    with: {image_size: 8, block_out_channels: [4, 8], attention_levels: [1], class_conditional: false,
           text_conditioning: true, context_dim: 16, steps: 2, batch_size: 4, checkpoint_every: 1}
  - id: guide
    uses: train
    inputs: {data: images}
    with: {model: convnet, model_config: {width: 4, depth: 1, im_size: 8}, epochs: 1, batch_size: 16}
  - id: tokens
    uses: synth
    inputs: {data: images, diffusion: t2i, classifier: guide, filter: sieve}
    with: {method: class_tokens, classes: [cat, ship], per_class: 1, max_epochs: 2, epoch_size: 1, train_steps: 2,
           num_inference_steps: 2, min_confidence: 0.0, min_copy_distance: 0.0}
"""


def crash_sweep(plan, root: Path, tmp_path: Path, write_faults, *, middle: bool):
    """Run ``plan`` once, then crash it at the first (and with ``middle`` a middle) commit and at the
    ``step.json`` commit of every step in turn, resuming each time, on the read-only ``root``. Returns the
    reference run directory, the crashed-and-resumed one and the crash points survived per step kind."""
    read_only(root, on=True)
    before = tree_digest(root)
    try:
        write_faults.reset(None)
        reference = run_recipe(plan, workdir=tmp_path / "ref", progress=False)
        commits = {step.id: sum(p.is_relative_to(reference.run_dir / step.id) for p in write_faults.paths)
                   for step in plan.steps}
        assert all(commits.values()), commits

        crashed = tmp_path / "crash" / plan.name
        survived = {}
        for step in plan.steps:
            points = sorted({1, (commits[step.id] + 1) // 2}) if middle else [1]
            for k, name in [(k, None) for k in points] + [(1, "step.json")]:
                write_faults.reset(k, under=crashed / step.id, name=name)
                with pytest.raises(write_faults.Crash):
                    run_recipe(plan, workdir=tmp_path / "crash", progress=False)
                survived[step.kind] = survived.get(step.kind, 0) + 1
        write_faults.reset(None)
        resumed = run_recipe(plan, workdir=tmp_path / "crash", progress=False)
        assert tree_digest(root) == before  # the user's folder: not one byte, link or mode changed
    finally:
        read_only(root, on=False)

    assert resumed.run_dir == crashed and min(survived.values()) >= 2
    for step in plan.steps:  # every output bit-identical: CPU work here is deterministic
        assert outputs(crashed, step.id) == outputs(reference.run_dir, step.id), step.id
    assert not list(crashed.rglob("*.tmp*")), "a temporary file of an interrupted write was left behind"
    return reference.run_dir, crashed, survived


@pytest.mark.parametrize("middle", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["ends", "middle"])
def test_every_step_kind_survives_crashes_at_its_commits_and_leaves_the_source_untouched(middle, tmp_path,
                                                                                         write_faults, fo):
    root = tmp_path / "images"
    image_folder(root)
    plan = parse_recipe(folder_recipe("sweep", root, TRAINING, EMBED, PROBE_AUDIT, CLEAN, QUALITY_INDEX_DUPLICATES,
                                       GENERATION_AND_EXPORT), filename="sweep.yaml")
    kinds = {step.kind for step in plan.steps}
    assert kinds == {k for k in STEPS.names() if not k.startswith("toy_")}, "add the new step kind to the sweep recipe"
    _, crashed, survived = crash_sweep(plan, root, tmp_path, write_faults, middle=middle)
    assert len(survived) == len(kinds)

    dataset = fo.load_dataset(json.loads((crashed / "fiftyone.json").read_text())["dataset"])
    ids = dataset.values("sample_id") if dataset.has_field("sample_id") else dataset.values("filepath")
    assert len(dataset) == len(ids) == len(set(ids)) == 50, "duplicate or orphan samples in the FiftyOne dataset"


def test_the_methods_the_kinds_sweep_leaves_out_survive_crashes_too(tmp_path, write_faults):
    """CDA with a registry teacher and stored relabel, SSL-conditioned variations with a panorama, and class
    tokens on a text-to-image model: crashed at each step's first and last commit, resumed bit-identical."""
    root = tmp_path / "images"
    image_folder(root)
    plan = parse_recipe(folder_recipe("methods", root, METHODS), filename="methods.yaml")
    reference, crashed, survived = crash_sweep(plan, root, tmp_path, write_faults, middle=False)
    assert sum(survived.values()) == 2 * len(plan.steps)
    assert (crashed / "tokens" / "class_tokens" / "cat.safetensors").is_file()
    assert json.loads((crashed / "recovered" / "metrics.json").read_text())["method"] == "cda"
