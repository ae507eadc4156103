"""The ssl_conditioned synth method: variations inherit their source's label and record it, interpolations slerp
two images of one class, samples follow their embedding, classifier-free guidance leaves equal predictions alone,
and the recipe ssl -> embed -> train_diffusion -> synth -> fiftyone links every variation to its source."""

import numpy as np
import pytest
import torch

from curate.config import from_mapping
from curate.errors import RecipeError, UsageError
from curate.recipes import parse_recipe, run_recipe
from synth.methods import SynthInputs, plan_samples
from synth.ssl_conditioned import EmbeddingPipeline, SSLConditionedConfig, SSLConditionedMethod
from synth_helpers import tiny_conditioned, tiny_conditioned_diffusion, tiny_sampler

NAMES = ["a", "b", "c"]
LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2])
IDS = np.array([f"real:{i}" for i in range(8)])


def _inputs(model=None):
    rng = np.random.default_rng(0)
    diffusion = tiny_conditioned_diffusion(NAMES, model)
    return SynthInputs(diffusion, rng.integers(0, 256, size=(8, 8, 8, 3), dtype=np.uint8), LABELS, NAMES,
                       real_ids=IDS, real_embeddings=rng.normal(size=(8, 6)).astype(np.float32))


def _generate(inputs=None, **options):
    cfg = from_mapping(SSLConditionedConfig, {"method": "ssl_conditioned", "per_class": 4, "num_inference_steps": 2,
                                              **options})
    inputs = inputs or _inputs()
    method = SSLConditionedMethod()
    labels, numbers, seeds = plan_samples(np.arange(3), per_class=cfg.per_class, base_seed=1)
    guide = method.prepare(cfg, inputs, base_seed=1, device="cpu", progress=False)
    assert guide.scorer is None  # nothing steers by a classifier: any filter is independent
    return method.generate(cfg, inputs, guide, labels=labels, numbers=numbers, seeds=seeds, device="cpu",
                           progress=False)


def test_variations_inherit_the_source_label_and_k_samples_share_a_source():
    gen = _generate(variations_per_image=2)
    source = gen.columns["source_id"]
    rows = np.searchsorted(IDS, source)
    np.testing.assert_array_equal(LABELS[rows], gen.labels)  # labels inherited from the source image
    assert (source[0::2] == source[1::2]).all()  # k = 2 consecutive samples per source
    assert len(set(source[gen.labels == 0])) == 2  # class 0: 4 samples / k = 2 sources
    assert all(v is None for v in gen.columns["source_b_id"]) and (gen.guidance_scale == 3.0).all()  # the paper's w


def test_interpolations_slerp_two_distinct_images_of_the_class():
    gen = _generate(mode="interpolations", slerp_t=0.25)
    a, b = np.searchsorted(IDS, gen.columns["source_id"]), np.searchsorted(IDS, gen.columns["source_b_id"])
    assert (a != b).all() and (LABELS[a] == gen.labels).all() and (LABELS[b] == gen.labels).all()
    np.testing.assert_allclose(gen.columns["slerp_t"], 0.25)
    drawn = _generate(mode="interpolations", slerp_t=None).columns["slerp_t"]
    assert ((drawn >= 0) & (drawn <= 1)).all() and len(set(drawn.tolist())) > 1
    lonely = _inputs()
    lonely.real_labels = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    with pytest.raises(UsageError, match="two real rows of class 2"):
        _generate(lonely, mode="interpolations")


def test_samples_follow_their_embedding():
    inputs = _inputs()
    base = _generate(inputs)
    inputs.real_embeddings = inputs.real_embeddings[::-1].copy()
    moved = _generate(inputs)
    assert not np.array_equal(base.images, moved.images)


@pytest.mark.parametrize("mode", ["variations", "interpolations"])
def test_each_sample_is_drawn_from_the_embedding_its_provenance_names(mode):
    """Provenance must name what conditioned: resampling each row from its recorded source(s) and seed gives it."""
    from synth.conditioning import slerp
    from synth.pipeline import make_sampler

    inputs = _inputs()
    gen = _generate(inputs, mode=mode, slerp_t=0.3, cfg_scale=1.0)
    vectors = torch.from_numpy(inputs.real_embeddings[np.searchsorted(IDS, gen.columns["source_id"])])
    if mode == "interpolations":
        b = torch.from_numpy(inputs.real_embeddings[np.searchsorted(IDS, gen.columns["source_b_id"])])
        vectors = slerp(vectors, b, torch.from_numpy(gen.columns["slerp_t"].astype(np.float32)))
    pipe = EmbeddingPipeline(inputs.diffusion.conditioned_unet(),
                             make_sampler("ddim", inputs.diffusion.scheduler_config), w=1.0)
    again = pipe(vectors.numpy(), num_inference_steps=2, seeds=gen.seeds, batch_size=64, progress=False)
    np.testing.assert_array_equal(again, gen.images)


def test_cfg_scale_changes_samples_unless_conditional_and_null_agree():
    model = tiny_conditioned()
    vectors, seeds = np.random.default_rng(0).normal(size=(3, 6)), [1, 2, 3]

    def sample(w):
        return EmbeddingPipeline(model, tiny_sampler(), w=w)(vectors, num_inference_steps=3, seeds=seeds)

    assert not np.array_equal(sample(0.0), sample(3.0))
    with torch.no_grad():
        model.conditioner.proj.weight.zero_()  # every context is now the null one
    np.testing.assert_array_equal(sample(0.0), sample(3.0))


RECIPE = """\
name: ssl_synth
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 3}
  - id: ssl
    uses: ssl
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 1}, epochs: 1, batch_size: 8}
  - id: emb
    uses: embed
    inputs: {data: cifar, model: ssl}
  - id: ddpm
    uses: train_diffusion
    inputs: {data: cifar, embeddings: emb}
    with: {image_size: 8, block_out_channels: [4, 8], attention_levels: [1], steps: 2, batch_size: 4,
           class_conditional: false, context_dim: 8}
  - id: sieve
    uses: train
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 1, im_size: 8}, epochs: 1, batch_size: 16}
  - id: gen
    uses: synth
    inputs: {data: cifar, diffusion: ddpm, filter: sieve}
    with: {method: ssl_conditioned, per_class: 2, variations_per_image: 2, num_inference_steps: 2,
           min_confidence: 0.0, min_copy_distance: 0.0, panorama_references: 2, panorama_grid: 2}
"""


def test_recipe_variations_record_and_link_their_sources_in_fiftyone(tmp_path, fo, dataset_name):
    import datasets

    text = RECIPE + (f"  - id: browse\n    uses: fiftyone\n    inputs: {{data: gen}}\n"
                     f"    with: {{dataset_name: {dataset_name}, visualization: none}}\n")
    result = run_recipe(parse_recipe(text, filename="r.yaml"), workdir=tmp_path, progress=False)
    run = tmp_path / "ssl_synth"
    assert (run / "ddpm" / "model" / "encoder" / "weights.safetensors").is_file()  # the model carries its encoder
    assert (run / "gen" / "variations.png").is_file() and result.outcome("gen").metrics["panoramas"] == 2
    from PIL import Image

    sheet = Image.open(run / "gen" / "panorama.png")  # 2 rows of a 16x16 reference and its panorama, x8
    assert sheet.size == ((1 + 16 + 4 + 16 + 1) * 8, (1 + 2 * 17) * 8)
    table = datasets.load_from_disk(str(run / "gen" / "table"))
    synthetic = table.filter(lambda s: s == "synthetic", input_columns="set")
    assert len(synthetic) == 20 and result.outcome("gen").metrics["filter_scoring"] == "independent"
    label_of = dict(zip(table["id"], table["label"]))
    assert all(label_of[s] == y for s, y in zip(synthetic["source_id"], synthetic["label"]))
    dataset = fo.load_dataset(dataset_name)
    curate_ids = set(dataset.values("curate_id"))
    linked = [(s["curate_id"], s["source_id"]) for s in dataset.match({"set": "synthetic"})]
    assert len(linked) == 20 and all(source in curate_ids for _, source in linked)
    real = dataset.match({"curate_id": linked[0][1]}).first()
    assert real["set"] == "real" and real["source_id"] is None


def _problems(text):
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, filename="r.yaml")
    return str(info.value)


def test_recipe_validation_names_the_conditioning_mistakes():
    assert "class_conditional" in _problems(RECIPE.replace("class_conditional: false", "class_conditional: true"))
    guided = RECIPE.replace("inputs: {data: cifar, diffusion: ddpm, filter: sieve}",
                            "inputs: {data: cifar, diffusion: ddpm, filter: sieve, embeddings: emb}")
    guided = guided.replace("method: ssl_conditioned", "method: classifier_guidance").replace(
        "variations_per_image: 2, ", "").replace(", panorama_references: 2, panorama_grid: 2", "")
    assert "does not read it" in _problems(guided)
    assert "panorama_references" in _problems(RECIPE.replace("panorama_references: 2", "panorama_references: -1"))


def test_embeddings_of_another_encoder_are_refused(tmp_path):
    text = RECIPE.replace("inputs: {data: cifar, diffusion: ddpm, filter: sieve}",
                          "inputs: {data: cifar, diffusion: ddpm, filter: sieve, embeddings: other}")
    text = text.replace("  - id: ddpm\n", "  - id: other\n    uses: embed\n    inputs: {data: cifar}\n"
                                          "    with: {model: resnet20-cifar}\n  - id: ddpm\n")
    with pytest.raises(UsageError, match="another encoder"):
        run_recipe(parse_recipe(text, filename="r.yaml"), workdir=tmp_path, progress=False)


def test_a_local_hf_dinov2_conditions_the_same_way(tmp_path):
    """`embed` with hf:<local DINOv2 folder> conditions train_diffusion; the saved model records that registry spec
    (nothing copied), and the synth step rebuilds the encoder from it to embed the real rows itself."""
    import json

    import transformers as tf

    path = tmp_path / "dinov2"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tf.Dinov2Model(tf.Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2,
                                       image_size=16, patch_size=8)).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "size": {"shortest_edge": 16},
         "crop_size": {"height": 16, "width": 16}, "do_center_crop": True}))
    text = RECIPE.replace("    inputs: {data: cifar, model: ssl}\n", f"    with: {{model: 'hf:{path}'}}\n    inputs: {{data: cifar}}\n")
    text = text.replace(", panorama_references: 2, panorama_grid: 2", "")
    result = run_recipe(parse_recipe(text, filename="r.yaml"), workdir=tmp_path / "runs", progress=False,
                        only=["cifar", "emb", "ddpm", "sieve", "gen"])
    model_dir = tmp_path / "runs" / "ssl_synth" / "ddpm" / "model"
    record = json.loads((model_dir / "curate.json").read_text())["conditioning"]["encoder"]
    assert record["model"]["name"] == f"hf:{path}" and not (model_dir / "encoder").exists()
    assert result.outcome("gen").metrics["generated"] == 20
