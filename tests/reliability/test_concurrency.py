"""Concurrent use: a run directory has one writer at a time, and runs sharing a FiftyOne database keep to
their own datasets."""

import json
import subprocess
import sys
import time

from click.testing import CliRunner

from curate.cli import cli
from curate.recipes import parse_recipe, run_recipe

RECIPE = """\
name: shared
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 1}
  - id: fiftyone
    uses: fiftyone
    inputs: {data: cifar}
"""


def test_a_second_run_on_a_locked_run_directory_fails_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "runs" / "shared"
    run_dir.mkdir(parents=True)
    holder = ("import sys, time\nfrom curate import workspace\n"
              "with workspace.run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        recipe = tmp_path / "shared.yaml"
        recipe.write_text(RECIPE.split("  - id: fiftyone")[0])
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["run", str(recipe), "--workdir", str(tmp_path / "runs"), "--quiet"])
        assert time.monotonic() - started < 10  # refused at once, not after waiting for the holder
        assert result.exit_code == 2 and f"pid {proc.pid}" in result.output, result.output
        assert not (run_dir / "cifar").exists()
    finally:
        proc.kill()
        proc.wait()
    again = CliRunner().invoke(cli, ["run", str(recipe), "--workdir", str(tmp_path / "runs"), "--quiet"])
    assert again.exit_code == 0, again.output  # the lock died with its holder


def test_runs_sharing_one_database_keep_to_their_own_datasets(tmp_path, fo):
    plan = parse_recipe(RECIPE, filename="shared.yaml")
    first = run_recipe(plan, workdir=tmp_path / "a", progress=False)
    name = json.loads((first.run_dir / "fiftyone.json").read_text())["dataset"]
    dataset = fo.load_dataset(name)
    sample = dataset.first()
    sample.tags.append("confirmed")
    sample.save()
    count = len(dataset)

    second = run_recipe(plan, workdir=tmp_path / "b", progress=False)  # same recipe name, another run dir
    other = json.loads((second.run_dir / "fiftyone.json").read_text())["dataset"]
    assert other != name and fo.dataset_exists(other)
    dataset.reload()
    assert len(dataset) == count and dataset.count_sample_tags() == {"confirmed": 1}
    assert len(fo.load_dataset(other)) == count and fo.load_dataset(other).count_sample_tags() == {}
