"""The CLI is thin: exit codes 0/1/2, one-line errors, --debug tracebacks."""

import subprocess
import sys

from click.testing import CliRunner

from curate.cli import cli

from toy_steps import TOY_RECIPE


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def write(tmp_path, text=TOY_RECIPE):
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return path


def test_validate_ok_and_bad(tmp_path):
    ok = invoke("validate", write(tmp_path))
    assert ok.exit_code == 0 and "ok (2 steps: numbers, scaled)" in ok.output
    bad = invoke("validate", write(tmp_path, TOY_RECIPE.replace("n: 5", "n: ten")))
    assert bad.exit_code == 2
    assert "toy.yaml:6: step 'numbers' with.n: expected an integer > 0, got 'ten'" in bad.output
    assert "Traceback" not in bad.output
    missing = invoke("validate", tmp_path / "missing.yaml")
    assert missing.exit_code == 2 and "recipe file not found" in missing.output


def test_run_status_clean(tmp_path):
    recipe = write(tmp_path)
    result = invoke("run", recipe, "--workdir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    again = invoke("run", recipe, "--workdir", tmp_path / "runs", "--quiet", "--set", "scaled.scale=4")
    assert again.exit_code == 0 and "skipped" in again.output
    status = invoke("status", tmp_path / "runs" / "toy")
    assert status.exit_code == 0 and "numbers" in status.output and "done" in status.output
    assert invoke("status", tmp_path).exit_code == 2
    cleaned = invoke("clean", tmp_path / "runs" / "toy", "--yes")
    assert cleaned.exit_code == 0 and not (tmp_path / "runs" / "toy").exists()


def test_failing_step_exits_1_and_debug_shows_traceback(tmp_path):
    recipe = write(tmp_path, TOY_RECIPE + "  - id: bad\n    uses: toy_fail\n")
    failed = invoke("run", recipe, "--workdir", tmp_path / "runs", "--quiet")
    assert failed.exit_code == 1 and "step 'bad' failed: RuntimeError: boom" in failed.output
    debug = invoke("--debug", "run", recipe, "--workdir", tmp_path / "runs", "--quiet")
    assert debug.exit_code == 1 and isinstance(debug.exception, Exception)


def test_steps_lists_kinds_with_fields():
    out = invoke("steps").output
    for kind in ("source", "train", "predict", "embed", "compare"):
        assert kind in out
    detail = invoke("steps", "toy_numbers").output
    assert "n" in detail and "an integer > 0" in detail and "how many numbers" in detail


def test_import_and_help_stay_light():
    code = (
        "import sys\n"
        "for m in ('torch', 'fiftyone', 'faiss', 'transformers', 'diffusers'):\n"
        "    sys.modules[m] = None  # any import of them now raises\n"
        "import curate, curate.cli\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(curate.cli.cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(curate.cli.cli, ['run', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
