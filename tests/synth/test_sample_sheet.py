"""Synth sample sheets: one row per class named on the left, and a title saying what was generated and kept."""

from types import SimpleNamespace

import numpy as np

import synth.quality
from synth.quality import sample_sheet
from synth.steps import SynthStep

from figure_checks import text_box, texts_outside

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def samples(n=30, side=16):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), np.arange(n) % len(NAMES)


def test_rows_are_labelled_with_class_names_and_the_title_fits():
    images, labels = samples()
    title = "classifier_guidance, step 'a_rather_long_synth_step_id': the 28 kept of 30 generated"
    fig = sample_sheet(images, labels, class_names=NAMES, per_class=3, title=title)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert "".join(ax.get_title().split()) == "".join(title.split())
    picture = ax.get_images()[0].get_array()
    rows = [(round(y) - 1) // 17 for y in ax.get_yticks()]  # 16 px samples and 1 px gaps, one row per class
    assert rows == list(range(10)) and picture.shape[0] == 10 * 17 + 1
    assert np.array_equal(picture[1 + 17 * 3:17 * 4, 1:17], images[3])  # class 3's first sample opens row 3
    assert texts_outside(fig) == []
    labels_box = [text_box(fig, name) for name in NAMES]
    assert all(a.y0 >= b.y1 - 0.5 for a, b in zip(labels_box, labels_box[1:]))  # top to bottom, apart


def test_the_synth_step_titles_both_sheets_with_method_step_and_counts(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(synth.quality, "sample_sheet", lambda *a, **k: figures.append(sample_sheet(*a, **k))
                        or figures[-1])
    written, outputs = [], {}
    ctx = SimpleNamespace(step_id="gen", add_output=outputs.__setitem__,
                          write_file=lambda name, writer: written.append(name) or writer(tmp_path / name))
    images, labels = samples(20, side=8)
    keep = np.arange(20) % 4 != 0
    SynthStep._sheets(ctx, SimpleNamespace(images=images, labels=labels), keep, NAMES,
                      SimpleNamespace(method="classifier_guidance", sheet_per_class=2))
    assert written == ["samples.png", "kept.png"] and outputs["report"]["kept"] == "kept.png"
    titles = [fig.axes[0].get_title().replace("\n", " ") for fig in figures]
    assert titles == ["classifier_guidance, step 'gen': all 20 generated (15 kept)",
                      "classifier_guidance, step 'gen': the 15 kept of 20 generated"]
    assert (tmp_path / "kept.png").read_bytes()[:4] == b"\x89PNG"
    assert all(texts_outside(fig) == [] for fig in figures)
