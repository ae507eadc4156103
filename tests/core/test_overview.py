"""The end of a run: headlines per step kind, the run's index.html, the terminal summary, Ctrl-C."""

from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.errors import StepFailed
from curate.recipes import parse_recipe, run_recipe
from curate.recipes.overview import run_overview, step_headline
from curate.recipes.runner import RunInterrupted
from curate.steps import STEPS

from toy_steps import TOY_RECIPE

REPORT_RECIPE = TOY_RECIPE + """\
  - id: report
    uses: toy_report
    inputs: {values: numbers}
    with: {note: "<b>bold</b> & [cifar10]"}
"""
DESCRIBED = REPORT_RECIPE.replace("name: toy\n", "name: toy\ndescription: <script>alert(1)</script>\n")


def run(tmp_path, text=REPORT_RECIPE, **kwargs):
    return run_recipe(parse_recipe(text, filename="r.yaml"), workdir=tmp_path, progress=False, **kwargs)


# --- headlines ------------------------------------------------------------------------------

BUILT_IN_METRICS = {
    "source": ({"rows": 2932, "classes": 10, "splits": {"test": 932, "train": 2000}},
               "2,932 rows, 10 classes (test 932, train 2,000)"),
    "train": ({"train_rows": 2000, "epochs": 20, "train_loss": 1.2, "targets": "onehot", "mix": "none",
               "accuracy": 0.4796, "eval_rows": 932}, "held-out accuracy 47.96% (932 rows)"),
    "predict": ({"rows": 932, "accuracy": 0.9163, "folds": None}, "accuracy 91.63% on 932 rows"),
    "embed": ({"rows": 2932, "dim": 64, "images_per_s": 703.2}, "2,932 x 64 embeddings (703 images/s)"),
    "compare": ({"teacher": 0.9163, "train": 0.4796, "seconds": 0.7}, "teacher 0.9163, train 0.4796"),
    "fiftyone": ({"dataset": "curate-demo", "step": "fiftyone", "database": "embedded", "database_uri": None,
                  "samples": 2932}, "2,932 samples in dataset 'curate-demo'"),
    "index": ({"rows": 2932, "dim": 64, "kind": "flat", "metric": "cosine"}, "2,932 rows, flat cosine"),
    "duplicates": ({"rows": 2932, "exact_groups": 0, "exact_duplicates": 0, "near_pairs": 6,
                    "near_status": "candidates to review", "leaky_rows": 3, "leak_status": "duplicates",
                    "threshold": 0.02}, "6 near-duplicate candidates to review, 3 leaky rows"),
    "export": ({"rows": 100, "splits": {"distilled": 100}, "columns": ["id"], "pushed_to": None},
               "100 rows (distilled 100)"),
    "relabel": ({"rows": 2932, "map": "8x8", "top_k": 5, "mean_classes_per_image": 1.1412,
                 "multi_label_share": 0.12}, "1.14 classes/image, 12.0% multi-label (8x8 maps)"),
    "condense": ({"accuracy": 0.333, "random_accuracy": 0.291, "rows": 100, "method": "dm", "ipc": 10},
                 "accuracy 33.30% vs 29.10% for random real images; 100 images (10/class)"),
    "audit": ({"issues": 39, "issue_rate": 0.0418, "rows": 932, "report": "/x/report/index.html"},
              "39 issues (4.2% of 932 rows)"),
    "audit_apply": ({"rows": 1739, "dropped": 261, "relabeled": 0, "input_rows": 2000, "action": "drop"},
                    "2,000 -> 1,739 rows (261 dropped, 0 relabeled)"),
    "image_quality": ({"rows": 500, "counts": {"blurry": 12, "dark": 30, "light": 0, "odd_size": 3},
                       "flagged_any": 41}, "41 of 500 images flagged: 30 dark, 12 blurry, 3 odd size"),
    "train_diffusion": ({"train_rows": 2000, "steps": 300, "final_loss": 0.08123}, "final loss 0.08123 after 300 steps"),
    "synth": ({"generated": 100, "kept": 42, "low_confidence": 50, "near_copy": 8}, "kept 42 of 100 generated"),
    "ssl": ({"train_rows": 2000, "epochs": 20, "final_loss": 5.1, "knn_accuracy": 0.4523, "eval_rows": 932},
            "k-NN accuracy 45.23% (932 held-out rows)"),
}


@pytest.mark.parametrize("kind", sorted(BUILT_IN_METRICS))
def test_each_built_in_kind_declares_a_headline_result_not_a_config_echo(kind):
    metrics, expected = BUILT_IN_METRICS[kind]
    assert step_headline(kind, metrics) == expected
    assert "=" not in expected and "None" not in expected


def test_every_built_in_kind_has_a_headline():
    assert set(BUILT_IN_METRICS) == {k for k in STEPS.names() if not k.startswith("toy_")}


def test_headline_variants_and_missing_metrics_show_nothing():
    assert step_headline("train", {"train_loss": 0.51234, "accuracy": None}) == \
        "final train loss 0.5123 (no held-out split)"
    assert step_headline("predict", {"rows": 2000, "accuracy": 0.36, "folds": 2}) == \
        "out-of-fold accuracy 36.00% (2 folds, 2,000 rows)"
    assert step_headline("duplicates", {"exact_duplicates": 2, "near_pairs": 1, "near_status": "duplicates"}) == \
        "2 exact duplicates, 1 near-duplicate pairs"
    assert step_headline("condense", {"accuracy": 0.42, "rows": 100, "ipc": 10, "protocol": "shortened protocol",
                                      "protocol_shortfall": {"iterations": [100, 20000]}}) == \
        "accuracy 42.00%; 100 images (10/class), shortened protocol"
    for kind in STEPS.names():  # an older manifest without the metrics: no headline, no error
        assert step_headline(kind, {}) in ("", None) or kind.startswith("toy_")
    assert step_headline("no_such_kind", {"accuracy": 1.0}) == ""


# --- the index page and the overview ----------------------------------------------------------


def test_every_run_writes_an_index_page_linking_reports_and_plots(tmp_path):
    result = run(tmp_path, DESCRIBED)
    page_path = result.run_dir / "index.html"
    page = page_path.read_text()
    assert result.overview.index_page == page_path
    for step in ("numbers", "scaled"):
        assert f"<tr><td>{step}</td>" in page
    assert "<tr><td><a href='#report'>report</a></td>" in page and "<h3 id='report'>" in page
    assert "href='report/report.html'" in page and "<img src='report/plots/curve.png'" in page
    assert html.escape("score 50% (<b>bold</b> & [cifar10])") in page  # the headline, escaped
    assert "<script>" not in page and html.escape("<script>alert(1)</script>") in page  # the recipe, escaped
    assert "<b>bold</b>" not in page
    assert "database_uri" not in page

    page_path.unlink()  # a rerun that skips every step writes it again
    again = run(tmp_path, DESCRIBED)
    assert {o.state for o in again.outcomes} == {"skipped"}
    assert page_path.is_file() and "class='skipped'>skipped</td>" in page_path.read_text()


def test_overview_has_absolute_report_paths_and_next_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_recipe(parse_recipe(REPORT_RECIPE, filename="r.yaml"), workdir="runs", progress=False)
    overview = result.overview
    run_dir = tmp_path / "runs" / "toy"
    assert overview.run_dir == run_dir and overview.run_dir.is_absolute()
    assert overview.reports == [("report", run_dir / "report" / "report.html")]
    report = next(s for s in overview.steps if s.id == "report")
    assert report.plots == (run_dir / "report" / "plots" / "curve.png",) and report.state == "ran"
    assert overview.next_steps == [f"curate status {run_dir}"]
    (run_dir / "fiftyone.json").write_text("{}")  # a run with a FiftyOne dataset: open it in the App
    assert run_overview(run_dir).next_steps[0] == f"curate app {run_dir}"
    assert {s.state for s in run_overview(run_dir).steps} == {"done"}


def test_a_manifest_cannot_point_the_page_outside_its_step(tmp_path):
    from curate import workspace

    result = run(tmp_path)
    outside = tmp_path / "secret.html"
    outside.write_text("x")
    manifest = workspace.read_manifest(result.run_dir / "report")
    manifest["files"].append("../../secret.html")
    workspace.write_manifest(result.run_dir / "report", manifest)
    report = next(s for s in run_overview(result.run_dir).steps if s.id == "report")
    assert [p.name for p in report.reports] == ["report.html"]


def test_a_failed_run_still_writes_the_page_with_the_failed_step(tmp_path):
    with pytest.raises(StepFailed):
        run(tmp_path, REPORT_RECIPE + "  - id: bad\n    uses: toy_fail\n")
    page = (tmp_path / "toy" / "index.html").read_text()
    assert "class='failed'>failed</td>" in page and "class='ran'>ran</td>" in page


def test_cli_summary_shows_headlines_full_paths_and_next_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(REPORT_RECIPE)
    out = CliRunner().invoke(cli, ["run", "r.yaml", "--quiet"])
    assert out.exit_code == 0, out.output
    run_dir = tmp_path / "runs" / "toy"
    assert "score 50% (<b>bold</b> & [cifar10])" in out.output  # brackets survive rich
    assert str(run_dir / "report" / "report.html") in out.output
    assert str(run_dir / "index.html") in out.output
    assert f"curate status {run_dir}" in out.output and "next:" in out.output
    assert "database_uri" not in out.output and "total=" not in out.output


def test_print_overview_escapes_markup_and_never_breaks_paths(tmp_path):
    import io

    from rich.console import Console

    from curate.console import print_overview
    from curate.recipes.overview import RunOverview, StepSummary

    run_dir = tmp_path / ("a-long-folder-name-" * 4) / "run"
    report = run_dir / "dups" / "duplicates.html"
    overview = RunOverview(run_dir=run_dir, name="run", recipe=None, index_page=run_dir / "index.html",
                           steps=[StepSummary("dups", "duplicates", "ran", 1.25, "[i] near [cifar10]", (report,))],
                           next_steps=[f"curate app {run_dir}"])
    buf = io.StringIO()
    print_overview(overview, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "[i] near [cifar10]" in text and "1.2s" in text
    buf = io.StringIO()
    print_overview(overview, Console(file=buf, width=40))  # a narrow terminal: the table folds, paths do not
    lines = buf.getvalue().splitlines()
    assert any(line.strip().endswith(str(report)) for line in lines)
    assert f"  curate app {run_dir}" in lines and any(line.endswith(str(run_dir / "index.html")) for line in lines)


# --- Ctrl-C -----------------------------------------------------------------------------------

INTERRUPTED = TOY_RECIPE + "  - id: wait\n    uses: toy_wait\n    inputs: {after: numbers}\n"


def test_interrupt_names_the_step_and_a_rerun_resumes(tmp_path):
    with pytest.raises(RunInterrupted) as caught:
        run(tmp_path, INTERRUPTED)
    assert caught.value.step_id == "wait" and isinstance(caught.value, KeyboardInterrupt)
    assert "class='interrupted'>interrupted</td>" in (tmp_path / "toy" / "index.html").read_text()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(INTERRUPTED)
    out = CliRunner().invoke(cli, ["run", str(recipe), "--workdir", str(tmp_path), "--quiet"])
    assert out.exit_code == 130
    assert "interrupted during step 'wait'; run the same command again to resume" in out.output
    assert "Traceback" not in out.output and "Aborted" not in out.output
    resumed = run(tmp_path, INTERRUPTED.replace("uses: toy_wait\n", "uses: toy_wait\n    with: {interrupt: false}\n"))
    assert {o.id: o.state for o in resumed.outcomes} == {"numbers": "skipped", "scaled": "skipped", "wait": "ran"}


def test_sigint_to_curate_run_exits_130_naming_the_step(tmp_path):
    """A real Ctrl-C: SIGINT to a `curate run` process while its step runs."""
    marker = tmp_path / "running"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TOY_RECIPE + f"  - id: wait\n    uses: toy_wait\n    with: {{marker: '{marker}', seconds: 60, "
                      "interrupt: false}\n")
    tests = Path(__file__).resolve().parent
    # a terminal's default Ctrl-C handling, even where the test runs with SIGINT ignored (a background job)
    code = (f"import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"sys.path.insert(0, {str(tests)!r}); import toy_steps; from curate.cli import main; main()")
    proc = subprocess.Popen([sys.executable, "-c", code, "run", str(recipe), "--workdir", str(tmp_path), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted during step 'wait'; run the same command again to resume" in err
    assert "Traceback" not in err
