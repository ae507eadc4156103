"""Recipe steps `train_diffusion` and `synth` (thin: the algorithms live in the synth modules)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from curate.config import option, to_dict
from curate.data.table import class_names_of, new_table_version, split_indices
from curate.steps.base import Role, Step, StepContext

log = logging.getLogger(__name__)

DIFFUSION_TYPE = "diffusion_model"
"""Artifact type of a saved diffusion model: a diffusers folder (``unet/``, ``scheduler/``, ``curate.json``)."""


# --- train_diffusion -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrainDiffusionConfig:
    """Defaults are the CPU demo size (minutes); a CIFAR-size GPU model is e.g. image_size 32,
    block_out_channels [128, 256, 256], layers_per_block 2, attention_levels [1], steps 50000, batch_size 128."""

    split: str | None = option("train", help="rows to train on (null: all)")
    image_size: int = option(16, gt=0, help="images are resized to image_size x image_size")
    block_out_channels: tuple[int, ...] = option((16, 32), help="UNet widths, one per resolution level")
    layers_per_block: int = option(1, gt=0)
    attention_levels: tuple[int, ...] = option((), help="levels (0 = full resolution) with self-attention")
    class_conditional: bool = option(True, help="class embedding (num_class_embeds): samples follow a label "
                                                "(false when inputs.embeddings conditions the model)")
    conditioning: Literal["cross_attention", "vector"] = option(
        "cross_attention", help="with inputs.embeddings: cross-attention on the projected embedding "
                                "(UNet2DConditionModel, attending at attention_levels and the middle block) or "
                                "the cheaper vector added to the time embedding")
    context_dim: int = option(64, gt=0, help="cross_attention: width of the projected embedding token (or of the "
                                             "text encoder)")
    text_conditioning: bool = option(
        False, help="condition on prompts made from the class names (a few templates) through a small CLIP text "
                    "encoder trained with the UNet (cross-attention), for text-to-image methods (class_tokens)")
    text_layers: int = option(2, gt=0, help="text_conditioning: transformer layers of the text encoder")
    tone_words: bool = option(False, help="text_conditioning: half the prompts name the image's tone (dark, bright, "
                                          "red, green, blue, gray) before the class, so the word slot a class token "
                                          "fills later changes the picture (without it the model ignores that slot)")
    p_uncond: float = option(0.1, ge=0, le=1, help="share of training rows conditioned on the null embedding "
                                                   "(the projection of zeros), for classifier-free guidance")
    normalize_embeddings: bool = option(True, help="L2-normalize each embedding before the projection (the "
                                                   "conditioner does it, at training and sampling alike)")
    steps: int = option(300, gt=0, help="optimizer steps")
    batch_size: int = option(32, gt=0)
    lr: float = option(2e-4, gt=0, help="AdamW learning rate (after warmup)")
    warmup_steps: int = option(20, ge=0)
    ema_decay: float = option(0.995, ge=0, lt=1, help="EMA of the weights; the saved model holds the EMA weights")
    grad_clip: float = option(1.0, gt=0)
    num_train_timesteps: int = option(1000, gt=1)
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = option("linear")
    flip: bool = option(True, help="random horizontal flips")
    checkpoint_every: int = option(100, gt=0, help="write a resumable checkpoint every this many steps")


class TrainDiffusionStep(Step):
    summary = ("Train a DDPM UNet (diffusers) on a table version, unconditional, class- or embedding-conditioned; "
               "EMA, checkpoints, resume, loss curve.")
    version = 2
    Config = TrainDiffusionConfig
    inputs = {"data": Role(("table",), help="the table version to train on"),
              "embeddings": Role(("embeddings",), optional=True,
                                 help="an embed step over the training rows: the model is conditioned on its "
                                      "vectors (any registry encoder: an `ssl` step's model, hf:..., resnet20-cifar)")}
    produces = (DIFFUSION_TYPE,)

    @classmethod
    def check(cls, config, wired):
        if "embeddings" in wired and config.class_conditional:
            return [("class_conditional", "the model is conditioned on inputs.embeddings, not on classes; set "
                                          "class_conditional: false")]
        if config.text_conditioning and config.class_conditional:
            return [("class_conditional", "the model is conditioned on prompts (text_conditioning), not on class "
                                          "ids; set class_conditional: false")]
        if config.tone_words and not config.text_conditioning:
            return [("tone_words", "tone words are part of prompts; set text_conditioning: true")]
        if config.text_conditioning and "embeddings" in wired:
            return [("text_conditioning", "a model is conditioned on prompts or on inputs.embeddings, not both")]
        return []

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        return f"final loss {metrics['final_loss']:.4g} after {metrics['steps']:,} steps"

    def run(self, ctx: StepContext) -> None:
        import numpy as np

        from curate import workspace
        from curate.data import decode_images
        from synth import train_diffusion as td

        cfg: TrainDiffusionConfig = ctx.config
        source = ctx.input("data")
        table = source.table()
        names = class_names_of(table)
        rows = split_indices(table, cfg.split, where="with.split")
        images = decode_images(table, rows, size=(cfg.image_size, cfg.image_size))
        labels = np.asarray(table["label"])[rows]
        emb = ctx.maybe_input("embeddings")
        kind = "cross_attention" if cfg.text_conditioning else cfg.conditioning if emb else None
        unet = td.build_unet(image_size=cfg.image_size, block_out_channels=cfg.block_out_channels,
                             layers_per_block=cfg.layers_per_block, attention_levels=cfg.attention_levels,
                             num_classes=len(names) if cfg.class_conditional else None, conditioning=kind,
                             context_dim=cfg.context_dim, seed=ctx.seed)
        vectors = conditioner = encoder = None
        if emb:
            vectors, encoder = _training_embeddings(emb, np.asarray(table["id"])[rows])
            conditioner = _conditioner(unet, kind, vectors.shape[1], cfg.normalize_embeddings, ctx.seed)
        elif cfg.text_conditioning:
            from synth.text_conditioning import text_conditioner, training_prompts

            conditioner = text_conditioner(names, context_dim=cfg.context_dim, layers=cfg.text_layers, seed=ctx.seed,
                                           tones=cfg.tone_words)
            prompts = training_prompts(images, labels, names, seed=ctx.seed, tones=cfg.tone_words)
            vectors = conditioner.encode(prompts).numpy()
        fingerprints = {"data": source.entry("table")["fingerprint"],
                        "embeddings": emb.entry("embeddings")["fingerprint"] if emb else None}
        key = workspace.json_sha256({"config": to_dict(cfg), **fingerprints, "seed": ctx.seed})
        result = td.train_ddpm(
            unet, images, labels, embeddings=vectors, conditioner=conditioner, p_uncond=cfg.p_uncond,
            steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
            ema_decay=cfg.ema_decay, grad_clip=cfg.grad_clip, num_train_timesteps=cfg.num_train_timesteps,
            beta_schedule=cfg.beta_schedule, flip=cfg.flip, checkpoint_dir=ctx.path("checkpoints"),
            checkpoint_every=cfg.checkpoint_every, resume_key=key, seed=ctx.seed, device=ctx.torch_device(),
            progress=ctx.progress)
        target = ctx.path("model")
        encoder_dir = None
        if encoder is not None and "artifact" in encoder["spec"]:
            artifact = encoder["spec"]["artifact"]
            encoder_dir = ctx.run_dir / artifact["step"] / artifact["path"]
        with workspace.atomic_dir(target) as tmp:
            td.save_diffusion_model(tmp, result.unet.to("cpu"), result.scheduler, class_names=names,
                                    conditioner=conditioner and conditioner.to("cpu"),
                                    encoder=encoder and {**encoder, "model": encoder["spec"]},
                                    encoder_dir=encoder_dir)
        ctx.add_output(DIFFUSION_TYPE, {
            "path": "model", "fingerprint": workspace.tree_sha256(target), "format": "diffusers",
            "image_size": cfg.image_size, "conditional": cfg.class_conditional, "class_names": names,
            "conditioning": "text" if cfg.text_conditioning else kind, "embed_step": emb.step_id if emb else None})
        ctx.write_file("loss.png", lambda p: td.loss_curve_png(p, result.losses))
        ctx.write_file("losses.npy", lambda p: np.save(p, result.losses))
        tail = result.losses[-max(1, len(result.losses) // 10):]
        ctx.metrics.update(train_rows=len(rows), steps=cfg.steps, final_loss=round(float(tail.mean()), 4),
                           resumed_from=result.resumed_from, images_per_second=round(result.images_per_second, 1),
                           parameters=sum(p.numel() for p in result.unet.parameters()))


def _training_embeddings(emb, ids):
    """``(vectors aligned to ids, encoder record)`` from an embed step: what the model is conditioned on."""
    from curate.artifacts import require_ids

    values, emb_ids = emb.array("embeddings")
    rows = require_ids(ids, emb_ids, what="training rows", where=f"embedded by step '{emb.step_id}'",
                       fix="run the embed step over the rows train_diffusion trains on (with.split: null)")
    entry = emb.entry("embeddings")
    record = {"spec": entry.get("model"), "normalize": bool(entry.get("normalize", False)), "embed_step": emb.step_id}
    return values[rows].astype("float32"), record


def _conditioner(unet, kind: str, dim: int, normalize: bool, seed: int):
    """A conditioner projecting ``dim``-d embeddings to the width ``unet`` reads, seeded."""
    import torch

    from synth.conditioning import Conditioner, context_width

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Conditioner(dim, context_width(unet, kind), kind=kind, normalize=normalize)


# --- synth ---------------------------------------------------------------------------------


class SynthStep(Step):
    summary = ("Generate labelled images with a diffusion model (method: classifier_guidance, ssl_conditioned, "
               "class_tokens), "
               "filter them (confidence of a classifier that did not guide, near copies), append them as "
               "`set: synthetic` rows in a new table version; KID/FID.")
    version = 5
    inputs = {
        "data": Role(("table",), help="the table version to extend (and its real rows for filters and KID/FID)"),
        "diffusion": Role((DIFFUSION_TYPE,), optional=True, help="a train_diffusion step (or with.diffusion_model)"),
        "classifier": Role(("model",), optional=True,
                           help="a `train` step's classifier that guides (guidance: clean_classifier) or that the "
                                "class tokens are learned against (class_tokens)"),
        "filter": Role(("model",), optional=True,
                       help="a `train` step's classifier that filters and scores the samples (not the guide)"),
        "embeddings": Role(("embeddings",), optional=True,
                           help="ssl_conditioned: an embed step over the real rows with the encoder the model was "
                                "trained on (else they are embedded here with the encoder saved in the model)"),
    }
    produces = ("table", "report")

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        return f"kept {metrics['kept']:,} of {metrics['generated']:,} generated"

    @classmethod
    def config_class(cls, raw) -> type:
        from curate.config import ConfigValueError
        from curate.errors import UnknownName
        from synth.registry import METHODS

        if raw.get("classifier") in ("noisy", "clean"):  # the option before guidance was chosen by registered name
            raise ConfigValueError("classifier", f"`classifier: {raw['classifier']}` is now "
                                                 f"`guidance: {raw['classifier']}_classifier`")
        try:
            return METHODS.get(str(raw.get("method", "classifier_guidance"))).Config
        except UnknownName as exc:
            raise ConfigValueError("method", str(exc)) from None

    @classmethod
    def config_variants(cls) -> dict[str, type]:
        from synth.registry import METHODS

        return {f"method: {name}": METHODS.get(name).Config for name in METHODS.names()}

    @classmethod
    def check(cls, config, wired):
        from synth.registry import METHODS

        problems = []
        if config.diffusion_model and "diffusion" in wired:
            problems.append(("diffusion_model", "give either `with.diffusion_model` or `inputs.diffusion`, not both"))
        if not config.diffusion_model and "diffusion" not in wired:
            problems.append(("diffusion_model", "wire a train_diffusion step to `inputs.diffusion` or name a "
                                                "diffusers model folder / hub id in `with.diffusion_model`"))
        if config.filter_model and "filter" in wired:
            problems.append(("filter_model", "give either `with.filter_model` or `inputs.filter`, not both"))
        if "embeddings" in wired and METHODS.get(config.method).conditioning != "embeddings":
            problems.append(("method", f"inputs.embeddings conditions embedding-conditioned methods "
                                       f"(ssl_conditioned); method {config.method} does not read it"))
        if getattr(config, "classifier_model", None) and "classifier" in wired:
            problems.append(("classifier_model", "give either `with.classifier_model` or `inputs.classifier`, "
                                                 "not both"))
        return problems

    def run(self, ctx: StepContext) -> None:
        import time

        import numpy as np

        from curate.data import decode_images
        from curate.errors import UsageError
        from curate.models import create_model
        from curate.learn.embed import embed_images
        from synth import filters, scorers
        from synth.methods import SynthInputs, check_conditioning, plan_samples
        from synth.registry import METHODS
        from synth.train_diffusion import load_diffusion_model

        cfg = ctx.config
        device = ctx.torch_device()
        table = ctx.input("data").table()
        names = class_names_of(table)
        diffusion_in = ctx.maybe_input("diffusion")
        diffusion = load_diffusion_model(diffusion_in.dir / diffusion_in.entry(DIFFUSION_TYPE)["path"]
                                         if diffusion_in else cfg.diffusion_model)
        if diffusion.class_names is not None and diffusion.class_names != names:
            raise UsageError(f"the diffusion model was trained on classes {diffusion.class_names[:5]}... but the "
                             f"table's classes are {names[:5]}...; train it on this table")
        check_conditioning(cfg.method, diffusion)  # before the filter, the decoding and any training
        size = (diffusion.image_size, diffusion.image_size)
        candidate = self._filter(ctx, cfg, names, diffusion.image_size, device)  # refuses before any training
        labels_all = np.asarray(table["label"])
        real_rows = split_indices(table, cfg.real_split, where="with.real_split")
        real_images = decode_images(table, real_rows, size=size)
        guide_model = _named_model(ctx, "classifier", getattr(cfg, "classifier_model", None),
                                   getattr(cfg, "classifier_weights", None), names)
        real_ids = np.asarray(table["id"])[real_rows]
        inputs = SynthInputs(diffusion, real_images, labels_all[real_rows], names, *(guide_model or (None, None)),
                             real_ids=real_ids,
                             real_embeddings=_real_embeddings(ctx, diffusion, table, real_rows, device))
        class_ids = self._class_ids(cfg, names)
        base_seed = ctx.seed if cfg.seed is None else cfg.seed
        labels, numbers, seeds = plan_samples(class_ids, per_class=cfg.per_class, base_seed=base_seed)

        method = METHODS.get(cfg.method)()
        started = time.perf_counter()
        guide = method.prepare(cfg, inputs, base_seed=base_seed, device=device, progress=ctx.progress)
        scorer, scoring = scorers.choose_filter(candidate, guide.scorer, allow_self_filter=cfg.allow_self_filter)
        gen = method.generate(cfg, inputs, guide, labels=labels, numbers=numbers, seeds=seeds, device=device,
                              progress=ctx.progress)
        seconds = time.perf_counter() - started
        pred_probs = scorer.classify(gen.images)

        if cfg.reference_split is not None:
            ref_rows = split_indices(table, cfg.reference_split, where="with.reference_split")
            ref_images = decode_images(table, ref_rows, size=size)
        min_confidence = cfg.min_confidence if cfg.confidence_quantile is None else filters.calibrated_confidence(
            scorer.classify(ref_images), labels_all[ref_rows], cfg.confidence_quantile)
        feature_model = create_model(cfg.feature_model, num_classes=len(names))
        fake_features = embed_images(feature_model, gen.images, device=device)
        real_features = embed_images(feature_model, real_images, device=device)
        result = filters.filter_samples(
            pred_probs, gen.labels, fake_features, real_features,
            real_ids=np.asarray(table["id"])[real_rows].tolist(), min_confidence=min_confidence,
            min_copy_distance=cfg.min_copy_distance)
        keep = result.keep
        model_ref = diffusion_in.step_id if diffusion_in else str(cfg.diffusion_model)
        parameters = {**to_dict(cfg), "diffusion_model": model_ref, "filter_model": scorer.name,
                      "filter_scoring": scoring, "min_confidence": min_confidence}
        rows = filters.synthetic_rows(
            images=gen.images[keep], labels=gen.labels[keep], numbers=gen.numbers[keep], seeds=gen.seeds[keep],
            step_id=ctx.step_id, class_names=names, split=cfg.split, method=cfg.method, parameters=parameters,
            guidance_scale=gen.guidance_scale[keep], kept=result.subset(keep),
            columns={name: np.asarray(values)[keep] for name, values in gen.columns.items()})
        ctx.save_table(new_table_version(table, add=rows, where=f"synth step '{ctx.step_id}'"))

        for name, writer in guide.files.items():
            ctx.write_file(name, writer)
        self._sheets(ctx, gen, keep, names, cfg)
        if "source_id" in gen.columns:
            self._variation_sheet(ctx, gen, real_ids, real_images, cfg.sheet_per_class)
        if getattr(cfg, "panorama_references", 0):
            self._panoramas(ctx, cfg, diffusion, table, base_seed, device)
        scored = "" if scoring == scorers.INDEPENDENT else f"_{scorers.SELF_SCORED}"  # never an unlabelled self-score
        metrics: dict[str, Any] = {
            "generated": int(len(keep)), **result.counts(), "min_confidence": round(min_confidence, 4),
            "images_per_second": round(len(keep) / seconds, 2),
            "filter_model": scorer.name, "filter_scoring": scoring,
            "guide_model": guide.scorer.name if guide.scorer is not None else None,
            f"accuracy{scored}": round(float((pred_probs.argmax(1) == gen.labels).mean()), 4),
            f"mean_target_prob{scored}": round(float(result.confidence.mean()), 4), **guide.metrics}
        if cfg.reference_split is not None:
            ref = embed_images(feature_model, ref_images, device=device)
            metrics.update(_distances("all", ref, fake_features))
            if keep.sum() >= 2:
                metrics.update(_distances("kept", ref, fake_features[keep]))
            metrics.update(_distances("real", ref, real_features))  # the floor at these counts
        ctx.metrics.update(metrics)
        ctx.write_json("filter.json", {"filter_model": scorer.name, "filter_scoring": scoring,
                                       "min_confidence": min_confidence,
                                       "confidence_quantile": cfg.confidence_quantile,
                                       "numbers": gen.numbers.tolist(), "labels": gen.labels.tolist(),
                                       "reason": result.reason.tolist(),
                                       "confidence": np.round(result.confidence, 4).tolist(),
                                       "copy_distance": np.round(result.copy_distance, 4).tolist()})

    @staticmethod
    def _filter(ctx: StepContext, cfg, names: list[str], image_size: int, device: str):
        """The configured filter as a Scorer: inputs.filter, with.filter_model, else the pretrained ResNet-20 where
        it can judge; None (the guide filters, self-scored) only with allow_self_filter, else a one-line refusal."""
        from curate.errors import UsageError
        from synth import scorers

        named = _named_model(ctx, "filter", cfg.filter_model, cfg.filter_weights, names)
        if named is None:
            refusal = scorers.pretrained_filter_refusal(names, image_size)
            if refusal is None:
                named = _named_model(ctx, None, scorers.PRETRAINED_FILTER, "default", names)
            elif cfg.allow_self_filter:
                return None
            else:
                raise UsageError(scorers.no_filter_message(refusal, image_size))
        model, name = named
        if tuple(model.preprocess.size) != (image_size, image_size):
            log.warning("synth step '%s': the filter %s reads %sx%s images; the %sx%s samples are resized for it",
                        ctx.step_id, name, *model.preprocess.size, image_size, image_size)
        return scorers.model_scorer(model, name=name, device=device)

    @staticmethod
    def _variation_sheet(ctx: StepContext, gen, real_ids, real_images, rows: int) -> None:
        """``variations.png``: per row, a source image (left) and the samples it conditioned."""
        import numpy as np

        from synth.quality import row_grid, write_png

        position = {sid: i for i, sid in enumerate(np.asarray(real_ids, dtype=str))}
        sources = list(dict.fromkeys(np.asarray(gen.columns["source_id"], dtype=str)))[:rows]
        lines = [[real_images[position[s]], *gen.images[np.asarray(gen.columns["source_id"], dtype=str) == s]]
                 for s in sources]
        sheet = row_grid(lines)
        ctx.write_file("variations.png", lambda p: write_png(p, sheet, scale=max(1, 64 // gen.images.shape[1])))

    @staticmethod
    def _panoramas(ctx: StepContext, cfg, diffusion, table, seed: int, device: str) -> None:
        """``panorama.png``: per row, a reference row of ``reference_split`` and its assembled panorama."""
        from curate.data import decode_images
        from curate.errors import UsageError
        from synth.panorama import panorama_of
        from synth.quality import row_grid, write_png

        if cfg.reference_split is None:
            raise UsageError("with.panorama_references reads rows of with.reference_split; name that split")
        side = cfg.panorama_grid * diffusion.image_size
        rows = split_indices(table, cfg.reference_split, where="with.reference_split")[:cfg.panorama_references]
        references = decode_images(table, rows, size=(side, side))
        lines = [[ref, panorama_of(diffusion, ref, stride=cfg.panorama_stride, w=cfg.panorama_cfg_scale,
                                   num_inference_steps=cfg.num_inference_steps, seed=seed + i, device=device,
                                   progress=ctx.progress)] for i, ref in enumerate(references)]
        sheet = row_grid(lines, gap=4)
        ctx.write_file("panorama.png", lambda p: write_png(p, sheet, scale=max(1, 128 // side)))
        ctx.metrics["panoramas"] = len(lines)

    @staticmethod
    def _class_ids(cfg, names: list[str]):
        import numpy as np

        from curate.errors import UsageError

        if cfg.classes is None:
            return np.arange(len(names))
        unknown = [c for c in cfg.classes if c not in names]
        if unknown:
            raise UsageError(f"with.classes: {unknown[0]!r} is not a class of the table ({', '.join(names[:10])})")
        return np.array([names.index(c) for c in cfg.classes])

    @staticmethod
    def _sheets(ctx: StepContext, gen, keep, class_names: list[str], cfg) -> None:
        from synth.quality import save_sample_sheet

        kept, made = int(keep.sum()), len(keep)
        for name, mask, what in (("samples", slice(None), f"all {made} generated ({kept} kept)"),
                                 ("kept", keep, f"the {kept} kept of {made} generated")):
            title = f"{cfg.method}, step '{ctx.step_id}': {what}"
            digest = ctx.write_file(f"{name}.png", lambda p, m=mask, t=title: save_sample_sheet(
                p, gen.images[m], gen.labels[m], class_names=class_names, per_class=cfg.sheet_per_class, title=t))
            if name == "samples":
                ctx.add_output("report", {"path": "samples.png", "fingerprint": digest, "kept": "kept.png"})


def _real_embeddings(ctx: StepContext, diffusion, table, rows, device: str):
    """The conditioning vectors of the real rows for an embedding-conditioned model (None otherwise): from the
    wired embed step when it used the model's encoder, else embedded here with that encoder."""
    import numpy as np

    from curate.artifacts import require_ids
    from curate.data import decode_images
    from curate.errors import UsageError

    if not diffusion.embedding_conditioned:
        return None
    record = (diffusion.conditioning or {}).get("encoder") or {}
    wired = ctx.maybe_input("embeddings")
    if wired is not None:
        entry = wired.entry("embeddings")
        if record and (entry.get("model") != record.get("spec")
                       or bool(entry.get("normalize", False)) != bool(record.get("normalize"))):
            raise UsageError(f"inputs.embeddings (step '{wired.step_id}') used another encoder or normalization than "
                             f"the diffusion model was trained on (embed step '{record.get('embed_step')}'); wire "
                             "that step, or leave inputs.embeddings out to embed with the model's own encoder")
        values, ids = wired.array("embeddings")
        found = require_ids(np.asarray(table["id"])[rows], ids, what="real rows",
                            where=f"embedded by step '{wired.step_id}'", fix="embed every row (with.split: null)")
        return values[found].astype(np.float32)
    encoder = diffusion.encoder()
    return diffusion.embed(decode_images(table, rows, size=tuple(encoder.preprocess.size)), device=device,
                           encoder=encoder)


def _named_model(ctx: StepContext, role: str | None, model_name: str | None, weights: str | None,
                 names: list[str]):
    """``(model, name)`` from the step wired to ``role``, else the registry model ``model_name``, else None.

    The name says where the weights came from, for provenance: ``convnet (step train_real)``,
    ``resnet20-cifar (weights default)``.
    """
    from curate.models import create_model
    from curate.steps.options import check_class_names

    wired = ctx.maybe_input(role) if role else None
    if wired is not None:
        model = wired.model()
        name = f"{wired.entry('model').get('model') or 'model'} (step {wired.step_id})"
    elif model_name:
        model = create_model(model_name, num_classes=len(names), weights=weights, class_names=names)
        name = f"{model_name} (weights {weights})"
    else:
        return None
    check_class_names(model, names)
    return model, name


def _distances(prefix: str, reference, features) -> dict[str, float]:
    from synth.quality import fid, kid

    return {f"kid_{prefix}": round(kid(reference, features).mean, 5),
            f"fid_{prefix}": round(fid(reference, features), 3)}
