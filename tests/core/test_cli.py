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


def test_steps_prints_brackets_and_every_choice_in_full():
    wide = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["steps", "toy_markup"]).output
    assert "Brackets [bold]in[/bold] text: [cifar10]." in wide and "e.g. [cifar10]; index rows as [i]" in wide
    assert "one of 'prune_by_noise_rate', 'prune_by_class', 'both_prune_by_noise_rate_and_class'" in wide
    narrow = CliRunner(env={"COLUMNS": "60"}).invoke(cli, ["steps", "toy_markup"]).output
    assert "…" not in narrow  # narrow columns fold long words instead of cutting them
    assert "e.g. [cifar10]" in " ".join(narrow.split())
    assert "e.g. [cifar10]" in " ".join(invoke("steps", "export").output.split())


def test_clean_of_a_missing_run_fails_before_asking(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import curate.cli

    asked = []
    monkeypatch.setattr(curate.cli, "sys", SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True)))
    monkeypatch.setattr(curate.cli.click, "confirm", lambda *a, **k: asked.append(a))
    missing = invoke("clean", tmp_path / "nope")
    assert missing.exit_code == 2 and not asked
    assert missing.output.strip().splitlines() == [
        f"error: {tmp_path / 'nope'} is not a curate run directory (no run.json); pass the folder `curate run` "
        "printed, e.g. runs/demo"]
    assert invoke("run", write(tmp_path), "--workdir", tmp_path / "runs", "--quiet").exit_code == 0
    assert invoke("clean", tmp_path / "runs" / "toy").exit_code == 0 and len(asked) == 1


def test_export_without_an_export_step_names_a_shipped_recipe_with_one(tmp_path, monkeypatch):
    from curate.recipes.bundled import recipes_using

    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    assert "recipes/full.yaml" in recipes_using("export") and "recipes/demo.yaml" not in recipes_using("export")
    assert recipes_using("no_such_kind") == []
    assert invoke("run", write(tmp_path), "--workdir", tmp_path / "runs", "--quiet").exit_code == 0
    out = invoke("export", tmp_path / "runs" / "toy")
    assert out.exit_code == 2
    assert ("has no 'export' step; add one to its recipe (`curate steps export` shows its options; the shipped "
            "recipe recipes/full.yaml has one) and `curate run` it") in out.output
