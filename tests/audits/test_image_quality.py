"""Image-quality issues: CleanVision's measurements reproduced exactly, planted issues found on real
CIFAR-10 images and on generated textures, severities monotone in the planted severity, dataset-relative
checks, streaming, and the `image_quality` step through the runner with and without FiftyOne."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFilter

from audits.image_quality import (ISSUE_TYPES, QualityThresholds, find_quality_issues, image_properties,
                                  measure_images, property_names)

# --- planted set -------------------------------------------------------------------------------


def textures(n: int, *, seed: int = 0, size: int = 32) -> np.ndarray:
    """(n, size, size, 3) uint8 'clean' images: a colour gradient, a dozen sharp coloured rectangles, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        c0, c1 = rng.uniform(40, 215, (2, 3))
        img = c0 + (c1 - c0) * (xx * rng.uniform(0.3, 1) + yy * rng.uniform(0.3, 1))[..., None] / 2
        for _ in range(12):
            y0, x0 = rng.integers(0, size - 4, 2)
            h, w = rng.integers(2, 10, 2) * size // 32
            img[y0:y0 + h, x0:x0 + w] = rng.uniform(20, 235, 3)
        img += rng.normal(0, 10, img.shape)
        out.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    return np.stack(out)


def blur(image: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def gray(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).convert("L").convert("RGB"))


def washed_out(image: np.ndarray) -> np.ndarray:
    """Over-exposed: every pixel pushed to within 4% of white except a 5x5 patch (2.4% of the image), so
    it is light without being near-constant."""
    out = (255 - (255 - image.astype(np.float64)) * 0.04).astype(np.uint8)
    out[10:15, 10:15] = image[10:15, 10:15]
    return out


def planted(clean: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """The clean images followed by one planted image per issue type (built from clean images 0..6), and
    the planted issue names in row order."""
    rng = np.random.default_rng(1)
    constant = (np.array([180, 120, 60]) + rng.integers(-1, 2, clean.shape[1:])).astype(np.uint8)  # a blank frame
    posterized = np.where(clean[3] >= 128, 255, 0).astype(np.uint8)  # 1 bit per channel: 8 colours
    extra = {
        "blurry": blur(clean[0], 2.0),  # its sharp source is clean[0]
        "dark": (clean[1] * 0.12).astype(np.uint8),
        "light": washed_out(clean[2]),
        "near_constant": constant,
        "low_information": posterized,
        "grayscale": gray(clean[4]),
        "odd_aspect_ratio": resize(clean[5], 16, 64),  # same area, 4:1
        "odd_size": resize(clean[6], 8, 8),  # 1/16 of the area
    }
    return list(clean) + list(extra.values()), list(extra)


def assert_planted_found(clean: np.ndarray) -> None:
    """Recall 1 for every issue type, and precision 1: every flag is the planted issue of its row."""
    images, names = planted(clean)
    issues = find_quality_issues(image_properties(images))
    truth = [None] * len(clean) + names
    for issue in ISSUE_TYPES:
        flagged = np.flatnonzero(issues.flags[issue])
        assert [truth[row] for row in flagged] == [issue], (
            f"{issue}: flagged rows {flagged.tolist()} ({[truth[r] for r in flagged]}); scores of the planted "
            f"row: {issues.scores[issue][len(clean) + names.index(issue)]:.3f}")


REAL_FINDS = {22: "blurry", 37: "grayscale"}
"""Among the first 40 CIFAR-10 test images, 22 (a soft, dark deer) is blurry and 37 is a grayscale photo."""


@pytest.fixture(scope="module")
def cifar_clean(shared_data) -> np.ndarray:
    """38 real CIFAR-10 test images: the first 40 except the two real finds."""
    images = np.load(shared_data / "cifar10" / "test" / "images.npy", mmap_mode="r")
    return np.asarray(images[[i for i in range(40) if i not in REAL_FINDS]])


def test_planted_issues_are_found_on_real_cifar_images(cifar_clean):
    """Recall 1 per planted issue, precision 1 over the 39 clean photos and the other planted images."""
    assert_planted_found(cifar_clean)


def test_planted_issues_are_found_on_generated_textures():
    assert_planted_found(textures(40))


def test_the_real_finds_among_the_first_cifar_images(shared_data):
    images = np.load(shared_data / "cifar10" / "test" / "images.npy", mmap_mode="r")[:40]
    issues = find_quality_issues(image_properties(np.asarray(images)))
    assert {int(row): issue for issue in ISSUE_TYPES for row in np.flatnonzero(issues.flags[issue])} == REAL_FINDS


# --- CleanVision's measurements, exactly ---------------------------------------------------------


def test_measurements_equal_pillow_and_cleanvision_definitions():
    """Gray image, FIND_EDGES spread (on the interior: Pillow copies the border through), histogram spread and
    entropy as Pillow computes them (what CleanVision calls), brightness percentiles as np.percentile gives
    them: so CleanVision's thresholds mean the same here."""
    rng = np.random.default_rng(0)
    images = np.concatenate([rng.integers(0, 256, (3, 24, 40, 3), dtype=np.uint8), textures(3, size=40)[:, :24]])
    props = image_properties(images)
    for i, image in enumerate(images):
        pil = Image.fromarray(image)
        luma = pil.convert("L")
        edges = np.asarray(luma.filter(ImageFilter.FIND_EDGES), dtype=np.float64)[1:-1, 1:-1]  # interior
        assert props["edge_std"][i] == pytest.approx(edges.std(), abs=1e-9)
        assert props["histogram_std"][i] == pytest.approx(np.std(luma.histogram()), abs=1e-9)
        assert props["entropy"][i] == pytest.approx(pil.entropy(), abs=1e-9)
        x = image.astype(np.float64)
        brightness = np.sqrt(0.241 * x[..., 0] ** 2 + 0.691 * x[..., 1] ** 2 + 0.068 * x[..., 2] ** 2) / 255
        assert props["brightness_p99"][i] == pytest.approx(np.percentile(brightness, 99), abs=1e-6)
        assert props["brightness_p5"][i] == pytest.approx(np.percentile(brightness, 5), abs=1e-6)
        assert props["pixel_std"][i] == pytest.approx(np.sqrt(x.reshape(-1, 3).var(axis=0).mean()), abs=1e-9)
        chroma = image.max(axis=2).astype(int) - image.min(axis=2)
        assert props["chroma_p99"][i] == pytest.approx(np.percentile(chroma, 99), abs=1e-9)
        assert (props["height"][i], props["width"][i]) == image.shape[:2]


def test_large_images_are_measured_on_an_area_downscale():
    """A 512 px image made of 8x8 blocks of a 64 px image measures like the 64 px image (blur at <= 64 px,
    the rest at <= 256 px by block means), except its size."""
    small = textures(2, size=64)
    big = small.repeat(8, axis=1).repeat(8, axis=2)
    p_small, p_big = image_properties(small), image_properties(big)
    for name in ("edge_std", "histogram_std", "entropy", "pixel_std"):
        np.testing.assert_allclose(p_big[name], p_small[name], rtol=1e-9, err_msg=name)
    # percentiles interpolate between neighbouring order statistics of 16x more samples: nearly equal
    np.testing.assert_allclose(p_big["brightness_p99"], p_small["brightness_p99"], atol=2e-3)
    np.testing.assert_allclose(p_big["brightness_p5"], p_small["brightness_p5"], atol=2e-3)
    np.testing.assert_allclose(p_big["chroma_p99"], p_small["chroma_p99"], atol=1.0)
    assert p_big["height"].tolist() == [512, 512]


# --- severity follows the planted severity -------------------------------------------------------


def _scores(images, issue, **kwargs) -> np.ndarray:
    return find_quality_issues(image_properties(list(images)), checks=(issue,), **kwargs).scores[issue]


@pytest.mark.parametrize("source", ["textures", "cifar"])
def test_severity_grows_with_the_planted_severity(source, request):
    base = textures(1)[0] if source == "textures" else request.getfixturevalue("cifar_clean")[8]
    increasing = {
        "blurry": [base] + [blur(base, r) for r in (0.5, 1.0, 1.5, 2.0, 3.0)],
        "dark": [(base * f).astype(np.uint8) for f in (1.0, 0.7, 0.4, 0.2, 0.1)],
        "light": [(255 - (255 - base.astype(float)) * f).astype(np.uint8) for f in (1.0, 0.6, 0.3, 0.1, 0.02)],
        "low_information": [(base // s * s).astype(np.uint8) for s in (1, 16, 64, 128)],
        "near_constant": [(128 + (base.astype(float) - 128) * f).astype(np.uint8) for f in (1, 0.3, 0.1, 0.02, 0)],
        "grayscale": [np.rint(base * (1 - a) + gray(base) * a).astype(np.uint8) for a in (0, 0.5, 0.8, 0.95, 1)],
    }
    for issue, images in increasing.items():
        scores = _scores(images, issue)
        assert (np.diff(scores) > 0).all(), f"{issue}: {scores.round(4)}"
    # relative checks: the planted image among 20 normal ones, more extreme -> higher
    normal = [base] * 20
    for issue, shapes in (("odd_size", [(24, 24), (16, 16), (8, 8), (4, 4)]),
                          ("odd_aspect_ratio", [(24, 40), (16, 64), (8, 128), (4, 256)])):
        scores = [_scores(normal + [resize(base, h, w)], issue)[-1] for h, w in shapes]
        assert (np.diff(scores) > 0).all(), f"{issue}: {np.round(scores, 3)}"


# --- dataset-relative checks ---------------------------------------------------------------------


def test_grayscale_is_flagged_only_in_a_mostly_colour_dataset():
    colour = textures(10)
    mostly_colour = list(colour[:8]) + [gray(c) for c in colour[8:]]
    mostly_gray = list(colour[:3]) + [gray(c) for c in colour[3:]]
    assert find_quality_issues(image_properties(mostly_colour)).flags["grayscale"].sum() == 2
    issues = find_quality_issues(image_properties(mostly_gray))
    assert not issues.flags["grayscale"].any() and issues.statistics["grayscale_checked"] is False
    assert issues.statistics["grayscale_share"] == pytest.approx(0.7)
    share = find_quality_issues(image_properties(mostly_gray), thresholds=QualityThresholds(grayscale_max_share=0.8))
    assert share.flags["grayscale"].sum() == 7


def test_odd_size_and_aspect_are_relative_to_the_dataset():
    """One size everywhere: only a 2x (area or aspect) difference is odd, not a few pixels. A dataset whose sizes
    vary widely (photos) flags only sizes far outside that spread."""
    base = textures(1)[0]
    same = [base] * 20
    near = find_quality_issues(image_properties(same + [resize(base, 36, 36), resize(base, 28, 36)]))
    assert not near.flags["odd_size"].any() and not near.flags["odd_aspect_ratio"].any()
    far = find_quality_issues(image_properties(same + [resize(base, 22, 22), resize(base, 20, 42)]))
    assert far.flags["odd_size"].tolist()[-2:] == [True, False]
    assert far.flags["odd_aspect_ratio"].tolist()[-2:] == [False, True]

    rng = np.random.default_rng(0)
    sides = np.exp(rng.normal(np.log(48), 0.3, (40, 2))).astype(int)
    varied = [resize(base, h, w) for h, w in sides]
    issues = find_quality_issues(image_properties(varied + [resize(base, 12, 12), resize(base, 40, 60)]))
    assert np.flatnonzero(issues.flags["odd_size"]).tolist() == [40]
    assert issues.statistics["odd_size_spread"] > np.log(2) / 3.5  # the spread of the data, not the floor


# --- batching and streaming ----------------------------------------------------------------------


def test_batching_and_mixed_sizes_do_not_change_measurements():
    images = list(textures(6)) + [textures(1, size=20)[0][:, :12], textures(1, seed=2, size=40)[0]]
    one_call = image_properties(images)
    one_by_one = [image_properties([im]) for im in images]
    streamed = measure_images(iter([images[:3], images[3:5], np.stack(images[5:6]), images[6:]]))
    for name in property_names():
        np.testing.assert_array_equal(one_call[name], [p[name][0] for p in one_by_one])
        np.testing.assert_array_equal(streamed[name], one_call[name])
    np.testing.assert_array_equal(image_properties(np.stack(images[:6]))["edge_std"], one_call["edge_std"][:6])


def test_hundred_thousand_images_stream_without_being_held():
    """100k images (77 MB of pixels) measured from a generator keep only a few numbers per image in memory."""
    base = textures(4, size=16)

    def batches():
        for start in range(0, 100_000, 2_000):
            yield np.tile(base, (500, 1, 1, 1)) ^ np.uint8(start % 256)

    tracemalloc.start()
    try:
        props = measure_images(batches(), checks=("dark", "grayscale", "odd_size"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(props["brightness_p99"]) == 100_000
    assert peak < 30e6, f"peak {peak / 1e6:.0f} MB"
    issues = find_quality_issues(props, checks=("dark", "grayscale", "odd_size"))
    assert issues.counts()["odd_size"] == 0


# --- input checks --------------------------------------------------------------------------------


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"`images` must be a uint8 \(B, H, W, 3\)"):
        image_properties(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"`images\[1\]` must be a uint8 \(H, W, 3\)"):
        image_properties([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="unknown image-quality check 'fuzzy'"):
        image_properties(np.zeros((1, 8, 8, 3), np.uint8), checks=("fuzzy",))
    with pytest.raises(ValueError, match="`checks` is empty"):
        find_quality_issues({"height": np.ones(1), "width": np.ones(1)}, checks=())
    with pytest.raises(ValueError, match="lacks entropy"):
        find_quality_issues(image_properties(np.zeros((1, 8, 8, 3), np.uint8), checks=("dark",)),
                            checks=("low_information",))


# --- the step ------------------------------------------------------------------------------------


def _image_folder(root, clean: np.ndarray) -> dict[str, str]:
    """An imagefolder of the planted set (PNG files, mixed sizes): {planted issue: sample id}."""
    images, issues = planted(clean)
    images.append(blur(clean[7], 3.0))  # blurrier than the planted one: first in the view and the grid
    names = [f"clean{i:02d}" for i in range(len(clean))] + issues + ["very_blurry"]
    ids = {}
    for i, (name, image) in enumerate(zip(names, images)):
        cls = "a" if i % 2 else "b"
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / cls / f"{name}.png")
        ids[name] = f"{cls}/{name}.png"
    return ids


RECIPE = """\
name: quality
steps:
  - id: images
    uses: source
    with: {{kind: imagefolder, path: {path}}}
{fiftyone}  - id: quality
    uses: image_quality
    inputs: {{data: images}}
    with: {{top: 4, batch_size: 7}}
"""
FIFTYONE_STEP = """\
  - id: fiftyone
    uses: fiftyone
    inputs: {data: images}
    with: {visualization: none}
"""


def _run(tmp_path, *, fiftyone: bool):
    from curate.recipes import parse_recipe, run_recipe

    ids = _image_folder(tmp_path / "folder", textures(24))
    text = RECIPE.format(path=tmp_path / "folder", fiftyone=FIFTYONE_STEP if fiftyone else "")
    result = run_recipe(parse_recipe(text, filename="quality.yaml"), workdir=tmp_path / "runs", progress=False)
    return result, ids


def test_step_writes_scores_flags_report_and_metrics(tmp_path):
    result, ids = _run(tmp_path, fiftyone=False)
    outcome = result.outcome("quality")
    step_dir = result.run_dir / "quality"
    table = pq.read_table(step_dir / "image_quality.parquet").to_pandas().set_index("id")
    assert len(table) == 24 + 9 and set(table["split"]) == {"train"}
    for issue in ISSUE_TYPES:
        flagged = table.index[table[f"is_{issue}_issue"]]
        assert set(flagged) == {ids[issue]} | ({ids["very_blurry"]} if issue == "blurry" else set()), issue
        assert table[f"{issue}_score"].notna().all()
    assert table.loc[ids["very_blurry"], "blurry_score"] > table.loc[ids["blurry"], "blurry_score"]
    assert table.loc[ids["odd_size"], ["height", "width"]].tolist() == [8, 8]
    metrics = outcome.metrics
    assert metrics["counts"] == {**dict.fromkeys(ISSUE_TYPES, 1), "blurry": 2}
    assert metrics["thresholds"]["blurry"] == 0.71 and metrics["rows"] == 33 and metrics["flagged_any"] == 9
    page = (step_dir / "report" / "index.html").read_text()
    assert "blurry" in page and 'src="odd_size.png"' in page
    assert all((step_dir / "report" / f"{issue}.png").stat().st_size > 1000 for issue in ISSUE_TYPES)
    manifest = json.loads((step_dir / "step.json").read_text())
    assert set(manifest["outputs"]) == {"image_quality", "report"}
    again = _rerun(tmp_path)
    assert again.outcome("quality").state == "skipped"


def _rerun(tmp_path):
    from curate.recipes import parse_recipe, run_recipe

    text = RECIPE.format(path=tmp_path / "folder", fiftyone="")
    return run_recipe(parse_recipe(text, filename="quality.yaml"), workdir=tmp_path / "runs", progress=False)


def test_step_config_is_validated():
    from curate.errors import UsageError
    from curate.recipes import parse_recipe

    recipe = RECIPE.format(path="/nowhere", fiftyone="")
    for config, message in (("{thresholds: {dark: 1.5}}", r"with.thresholds.dark: expected a number >= 0 and <= 1"),
                            ("{checks: []}", r"with.checks: name at least one issue type"),
                            ("{checks: [fuzzy]}", r"with.checks\[0\]: expected one of 'blurry'")):
        with pytest.raises(UsageError, match=message):
            parse_recipe(recipe.replace("{top: 4, batch_size: 7}", config), filename="quality.yaml")


def test_step_shows_scores_and_views_in_fiftyone(tmp_path, fo):
    from fiftyone import ViewField as F

    result, ids = _run(tmp_path, fiftyone=True)
    record = json.loads((result.run_dir / "fiftyone.json").read_text())
    dataset = fo.load_dataset(record["dataset"])
    schema = dataset.get_field_schema()
    assert {f"quality_{issue}" for issue in ISSUE_TYPES} | {"quality_issues"} <= set(schema)
    for issue in ISSUE_TYPES:
        want = [ids["very_blurry"], ids["blurry"]] if issue == "blurry" else [ids[issue]]  # most severe first
        assert dataset.load_saved_view(f"quality_{issue}").values("curate_id") == want, issue
    assert dataset.match(F("curate_id") == ids["dark"]).first()["quality_issues"] == ["dark"]
    assert dataset.match(F("curate_id") == "b/clean00.png").first()["quality_issues"] == []
    scores = dataset.values("quality_blurry")
    assert len(scores) == 33 and None not in scores
    shown = result.outcome("quality").metrics["fiftyone"]
    assert shown["flagged"] == {**dict.fromkeys(ISSUE_TYPES, 1), "blurry": 2}
    assert len(shown["views"]) == len(ISSUE_TYPES)


def test_ranking_lists_flagged_rows_most_severe_first():
    base = textures(6)
    images = [blur(base[0], 1.5), base[1], blur(base[0], 3.0), base[3], blur(base[0], 2.0), base[5]]
    issues = find_quality_issues(image_properties(images), checks=("blurry",))
    assert issues.ranking("blurry").tolist() == [2, 4, 0]
    assert issues.counts() == {"blurry": 3} and issues.any_issue.tolist() == [True, False, True, False, True, False]
