"""Thread settings: `defaults.threads` validated, applied by the runner once, recorded, restored; the passive
OpenMP wait policy set before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from curate.errors import RecipeError
from curate.recipes import parse_recipe, run_recipe
from curate.threads import available_cpus, resolve_threads

from toy_steps import TOY_RECIPE

WAIT = TOY_RECIPE + "  - id: wait\n    uses: toy_wait\n    with: {interrupt: false}\n"


def with_threads(value) -> str:
    return WAIT.replace("name: toy\n", f"name: toy\ndefaults: {{threads: {value}}}\n")


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("1", 1), ("3", 3)])
def test_threads_accepts_auto_or_a_count(value, expected):
    assert parse_recipe(with_threads(value)).defaults.threads == expected
    assert parse_recipe(WAIT).defaults.threads == "auto"


@pytest.mark.parametrize("value, message", [
    ("0", "defaults.threads: must be 'auto' or a whole number >= 1, got 0"),
    ("many", "defaults.threads: expected an integer or one of 'auto', got 'many'"),
    ("1.5", "defaults.threads: expected an integer or one of 'auto', got 1.5"),
    ("true", "defaults.threads: expected an integer or one of 'auto', got True"),
])
def test_bad_threads_fail_validation_naming_line_and_field(value, message):
    with pytest.raises(RecipeError) as caught:
        parse_recipe(with_threads(value), filename="r.yaml")
    assert str(caught.value) == f"r.yaml:2: {message}"


def test_runner_sets_threads_for_its_steps_records_them_and_restores_the_callers(tmp_path):
    import torch

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    result = run_recipe(parse_recipe(with_threads(other)), workdir=tmp_path, progress=False)
    assert result.outcome("wait").metrics["torch_threads"] == other
    assert torch.get_num_threads() == before
    record = json.loads((result.run_dir / "wait" / "step.json").read_text())["threads"]
    assert record["torch"] == other and record["requested"] == other and record["cpus"] == available_cpus()
    assert record["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "default")

    auto = run_recipe(parse_recipe(WAIT), workdir=tmp_path / "auto", progress=False)
    assert auto.outcome("wait").metrics["torch_threads"] == available_cpus()


def test_a_run_that_skips_everything_never_loads_torch(tmp_path):
    """The thread setting is applied lazily, before the first step that runs."""
    run_recipe(parse_recipe(TOY_RECIPE), workdir=tmp_path, progress=False)
    code = ("import sys; sys.path.insert(0, {tests!r}); import toy_steps\n"
            "from curate.recipes import parse_recipe, run_recipe\n"
            "r = run_recipe(parse_recipe(toy_steps.TOY_RECIPE), workdir={work!r}, progress=False)\n"
            "assert {{o.state for o in r.outcomes}} == {{'skipped'}}\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    tests = os.path.dirname(__file__)
    subprocess.run([sys.executable, "-c", code.format(tests=tests, work=str(tmp_path))], check=True,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_cpu_count_follows_affinity_and_cgroup_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert available_cpus(quota) == affinity
    quota.write_text("50000 100000\n")  # half a CPU: still one thread
    assert available_cpus(quota) == 1
    assert available_cpus(tmp_path / "missing") == affinity
    assert resolve_threads("auto") == available_cpus() and resolve_threads(3) == 3
    with pytest.raises(ValueError, match="whole number >= 1"):
        resolve_threads(0)


def test_the_cli_sets_a_passive_wait_policy_before_torch_loads_and_keeps_a_users_choice():
    code = ("import os, sys\n"
            "from click.testing import CliRunner\n"
            "from curate.cli import cli\n"
            "CliRunner().invoke(cli, ['status', 'no-such-run'])\n"
            "assert 'torch' not in sys.modules\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))\n"
            "import torch\n"
            "from curate.threads import prefer_passive_waiting\n"
            "assert prefer_passive_waiting() is False  # too late once torch is loaded\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
