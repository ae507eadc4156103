"""Synthetic data: diffusion models trained on a table version, class-steered sampling, filters and quality.

Modules (each imports torch/diffusers itself, so ``import synth`` stays cheap):

- ``synth.train_diffusion``: DDPM training of a diffusers UNet (unconditional, class- or embedding-conditioned)
  with EMA, checkpoints and exact resume;
- ``synth.conditioning``: the embedding conditioner (null = projection of zeros), classifier-free guidance, slerp;
- ``synth.noisy_classifier``: a small timestep-aware classifier ``p(y | x_t, t)`` trained on noised images;
- ``synth.registry``: the registries ``METHODS`` and ``GUIDANCE`` (torch-free, for recipe validation);
- ``synth.guidance``: classifier guidance components (``noisy_classifier``, ``clean_classifier``);
- ``synth.pipeline``: :class:`~synth.pipeline.GuidedPipeline`, one readable sampling loop with per-sample seeds;
- ``synth.scorers``: the guiding and the filtering classifier, named and fingerprinted, kept apart;
- ``synth.filters``: confidence and near-copy filters, provenance, the new table version (shared by every method);
- ``synth.quality``: KID, FID, sample sheets;
- ``synth.methods``: the synth method contract and ``classifier_guidance``;
- ``synth.ssl_conditioned``: the ``ssl_conditioned`` method (variations and interpolations of real images' embeddings);
- ``synth.panorama``: large images assembled from overlapping windows conditioned on a grid of embeddings;
- ``synth.text_conditioning``: prompts through a small CLIP text encoder and an offline tokenizer (text-to-image);
- ``synth.class_tokens``: the ``class_tokens`` method (one learned token per class, Discriminative Class Tokens);
- ``synth.steps``: the recipe steps ``train_diffusion`` and ``synth``.
"""
