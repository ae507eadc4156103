"""`compare`: mean +- 95% interval for seeded steps, "1 run" for the others, and a chart whose text fits."""

import pytest

from curate.errors import UsageError
from curate.stats import summarize
from curate.steps.compare import Bar, bar_chart, read_bar

from figure_checks import colliding, rendered_texts, text_box, texts_outside

LONG_TITLE = "Held-out accuracy of ConvNets trained on the original, audited and synthetic-augmented splits"


def test_a_step_with_runs_gets_their_interval_and_count():
    bar = read_bar("train", "train", {"accuracy": 0.6, "accuracy_runs": [0.5, 0.6, 0.7]}, "accuracy")
    assert bar.ci95 == pytest.approx(4.303 * 0.1 / 3 ** 0.5) == summarize([0.5, 0.6, 0.7])["ci95"]
    assert (bar.value, bar.runs, bar.note) == (0.6, 3, "n=3 runs")
    reported = read_bar("t", "train", {"accuracy": 0.6, "accuracy_ci95": 0.02, "accuracy_runs": [0.59, 0.61]},
                        "accuracy")
    assert (reported.ci95, reported.runs) == (0.02, 2)  # the step's own interval wins
    only_ci = read_bar("c", "condense", {"accuracy": 0.3, "accuracy_ci95": 0.05}, "accuracy")
    assert (only_ci.ci95, only_ci.runs, only_ci.note) == (0.05, None, "interval")


def test_a_single_run_is_labelled_as_such():
    for metrics in ({"accuracy": 0.9163}, {"accuracy": 0.48, "accuracy_ci95": None, "accuracy_runs": [0.48]}):
        bar = read_bar("teacher", "predict", metrics, "accuracy")
        assert bar.ci95 is None and bar.note == "1 run"


def test_a_missing_metric_names_the_step_and_what_it_has():
    with pytest.raises(UsageError, match="step 'embed' has no metric 'accuracy' \\(it has: rows\\)"):
        read_bar("embed", "embed", {"rows": 3}, "accuracy")


def test_error_bars_only_where_an_interval_is_known_and_labels_say_how_many_runs():
    bars = [Bar(step="teacher", kind="predict", value=0.9163),
            Bar(step="train", kind="train", value=0.48, ci95=0.012, runs=3)]
    fig = bar_chart(bars, metric="accuracy", title="Held-out accuracy")
    ax = fig.axes[0]
    [errorbar] = ax.containers[1:]  # the bars, then one errorbar container
    segments = errorbar.lines[2][0].get_segments()
    assert len(segments) == 1 and [y for _, y in segments[0]] == pytest.approx([0.468, 0.492])
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["teacher\n(1 run)", "train\n(n=3 runs)"]
    shown = [text for text, _ in rendered_texts(fig)]
    assert "48.0%\n± 1.2%" in shown and "91.6%" in shown
    assert "95% CI" in ax.get_ylabel()


@pytest.mark.parametrize("count", [2, 3, 8])
def test_long_step_ids_and_titles_stay_inside_the_figure_and_apart(count):
    bars = [Bar(step=f"train_on_the_audited_split_variant_number_{i}", kind="train", value=0.4 + 0.05 * i,
                ci95=0.03, runs=3) for i in range(count)]
    fig = bar_chart(bars, metric="accuracy", title=LONG_TITLE + " and a few more words to wrap")
    assert texts_outside(fig) == []
    ax = fig.axes[0]
    assert colliding([text_box(fig, t.get_text()) for t in ax.get_xticklabels()]) == []
    values = [box for text, box in rendered_texts(fig) if "±" in text and "CI" not in text]
    assert len(values) == count and colliding([text_box(fig, ax.get_title())] + values) == []


def test_other_metrics_keep_their_scale():
    fig = bar_chart([Bar(step="a", kind="predict", value=3.5), Bar(step="b", kind="train", value=2.0, ci95=0.4,
                                                                        runs=2)], metric="loss", title="loss")
    shown = [text for text, _ in rendered_texts(fig)]
    assert shown.count("3.5") == 2 and "2\n± 0.4" in shown  # the bar's value and the y tick
    assert texts_outside(fig) == []
