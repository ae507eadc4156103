"""Discriminative Class Tokens: one new token embedding that makes a frozen text-to-image model draw class ``c``.

After "Discriminative Class Tokens for Text-to-Image Diffusion Models" (ICCV 2023;
idansc/discriminative_class_tokens). A placeholder token joins the tokenizer; only its embedding is
optimized, with the cross-entropy of a frozen classifier on images generated from prompts that contain
it. Each generation runs every denoising step but the last under ``no_grad``, so the gradient flows
through the final UNet call only. The initial noise is reseeded at the start of every epoch (one epoch
= ``epoch_size`` generations = one accumulated optimizer update), so every epoch scores the same noise.

Deliberate departures from the official script, each a bug there:

- the embedding is a separate ``[1, d]`` parameter spliced into the embedding layer's output
  (:class:`TokenSplice`): AdamW's decoupled weight decay on the whole matrix would shrink every other
  vocabulary row, and no other row can move here;
- the gradient norm is clipped after the backward passes (the official clip runs before, doing nothing);
- latents are decoded with ``vae.config.scaling_factor``, not the constant 0.18215;
- the checkpoint kept is the token the epoch's images were generated with (the one its loss and
  accuracy describe), not the token after the update.

Works on the small text-conditioned models ``train_diffusion`` trains (pixel space) and on a Stable
Diffusion folder (``tokenizer/``, ``text_encoder/``, ``unet/``, ``vae/``, ``scheduler/``; latent space).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from curate.config import option
from curate.errors import UsageError
from synth.methods import Generated, Guide, SynthInputs, SynthOptions, check_conditioning

TRAIN_TEMPLATES = ("A photo of {token} {cls}", "a high resolution realistic image of {token} {cls}",
                   "A close-up photo of a {token} {cls}")
"""The official prompts; the first ``number_of_prompts`` (3) are cycled through in an epoch."""
PROMPT = "A photo of {token} {cls}"
"""The generation prompt; without a token it is the plain class prompt the token is compared against."""


def render(template: str, *, cls: str, token: str | None) -> str:
    """``template`` with the class name and the placeholder (or none: the plain prompt)."""
    return " ".join(template.format(token=token or "", cls=cls).split())


@dataclass(frozen=True, kw_only=True)
class TokenSettings:
    """The optimization's settings; defaults are the official ones (``config.py``, lr 2.5e-4 x 5)."""

    placeholder: str = "newclas"
    init_token: str = "a"
    lr: float = 1.25e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    eps: float = 1e-8
    epoch_size: int = 5
    max_epochs: int = 50
    patience: int = 15
    accuracy: float = 0.7
    collapse: float = 2.0
    seed: int = 35
    num_inference_steps: int = 30
    cfg_scale: float = 7.0
    grad_clip: float = 1.0
    number_of_prompts: int = 3
    grad_steps: int = 1
    """Final denoising steps the gradient flows through: 1 is the paper's; more is a departure (see the README)."""


class TokenSplice(nn.Module):
    """An embedding layer whose ``token_id`` row reads ``row`` ([1, d], the only trainable tensor) instead.

    Ids past the base table (the added placeholder) are looked up clamped and then replaced, so the
    vocabulary needs no resize and no base row can change."""

    def __init__(self, base: nn.Embedding, token_id: int, row: torch.Tensor):
        super().__init__()
        self.base, self.token_id = base, int(token_id)
        self.row = nn.Parameter(row.detach().clone().reshape(1, -1).to(base.weight))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids.clamp(max=self.base.num_embeddings - 1))
        return torch.where((ids == self.token_id)[..., None], self.row.to(out.dtype), out)


@dataclass
class TextToImage:
    """A frozen text-to-image model: CLIP tokenizer and text encoder, eps UNet with cross-attention, its training
    noise schedule, and a VAE for latent models (None: the UNet works on pixels in [-1, 1])."""

    tokenizer: object
    text_encoder: nn.Module
    unet: nn.Module
    scheduler_config: dict
    vae: nn.Module | None = None

    @classmethod
    def from_diffusion(cls, diffusion) -> "TextToImage":
        """From a loaded :class:`~synth.train_diffusion.DiffusionModel` conditioned on text."""
        check_conditioning("class_tokens", diffusion)
        c = diffusion.conditioner
        return cls(c.tokenizer, c.text_encoder, diffusion.unet, dict(diffusion.scheduler_config), diffusion.vae)

    def to(self, device: str) -> "TextToImage":
        for m in (self.text_encoder, self.unet, self.vae):
            if m is not None:
                m.to(device)
        return self

    @property
    def max_length(self) -> int:
        return int(self.text_encoder.config.max_position_embeddings)

    def with_placeholder(self, placeholder: str) -> tuple[object, int]:
        """A copy of the tokenizer with ``placeholder`` added, and its id (the base tokenizer is left alone)."""
        import copy

        tokenizer = copy.deepcopy(self.tokenizer)
        if placeholder in tokenizer.get_vocab():
            raise UsageError(f"the placeholder {placeholder!r} is already a token of the model; pick another "
                             "with.placeholder")
        tokenizer.add_tokens(placeholder)
        return tokenizer, int(tokenizer.convert_tokens_to_ids(placeholder))

    def init_row(self, tokenizer, word: str) -> torch.Tensor:
        """The embedding row of ``word``, which must be one token (the official initialiser is ``a``)."""
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise UsageError(f"the init token {word!r} is {len(ids)} tokens for this tokenizer; pick a single token")
        return self.text_encoder.get_input_embeddings().weight[ids[0]].detach().clone()

    def context(self, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
        ids = tokenizer(list(prompts), padding="max_length", max_length=self.max_length, truncation=True,
                        return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.text_encoder.device)).last_hidden_state

    def noise(self, generators: list[torch.Generator]) -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        size = int(self.unet.config.sample_size)
        shape = (len(generators), int(self.unet.config.in_channels), size, size)
        return randn_tensor(shape, generator=generators, device=self.unet.device)

    def denoise(self, latents: torch.Tensor, context: torch.Tensor, null: torch.Tensor, *, steps: int,
                cfg_scale: float, grad_steps: int = 0) -> torch.Tensor:
        """DDIM with classifier-free guidance (diffusers' scale: 1 = conditional only) on the model's training
        schedule (its ``clip_sample`` included: a pixel model trained with clipping draws worse samples without);
        only the final ``grad_steps`` UNet calls are differentiated (the paper: 1), the others run under
        ``no_grad``. At the last step a clip of ``x0`` is the decoder's clamp, so it costs no gradient there."""
        from synth.pipeline import make_sampler

        sched = make_sampler("ddim", self.scheduler_config)
        sched.set_timesteps(steps)
        x = latents * sched.init_noise_sigma
        timesteps = sched.timesteps.tolist()
        for i, t in enumerate(timesteps):
            with torch.set_grad_enabled(i >= len(timesteps) - grad_steps):
                both = torch.cat([sched.scale_model_input(x, t)] * 2)
                eps_u, eps_c = self.unet(both, t, encoder_hidden_states=torch.cat([null, context])).sample.chunk(2)
                x = sched.step(eps_u + cfg_scale * (eps_c - eps_u), t, x).prev_sample
        return x

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1]: the VAE's decoding of ``latents / scaling_factor``, or the pixels themselves."""
        x = latents if self.vae is None else self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return x.clamp(-1, 1)

    @contextlib.contextmanager
    def spliced(self, splice: TokenSplice | None, *others: nn.Module) -> Iterator[None]:
        """The text encoder reads ``splice`` for its token embeddings, and every model (and ``others``, e.g. the
        classifier) is frozen, inside: only the token gets a gradient."""
        modules = [m for m in (self.text_encoder, self.unet, self.vae, *others) if m is not None]
        flags = [[p.requires_grad for p in m.parameters()] for m in modules]
        base = self.text_encoder.get_input_embeddings()
        try:
            for m in modules:
                m.requires_grad_(False).eval()
            if splice is not None:
                self.text_encoder.set_input_embeddings(splice)
            yield
        finally:
            self.text_encoder.set_input_embeddings(base)
            for m, fl in zip(modules, flags):
                for p, f in zip(m.parameters(), fl):
                    p.requires_grad_(f)


@dataclass
class StopRule:
    """The official stopping rules, epoch by epoch: a loss below the best checkpoints and resets the patience,
    otherwise the patience drops; stop when the epoch's accuracy exceeds ``accuracy`` or the patience falls below
    0; a loss above ``collapse`` x the best is a collapse (the caller moves to the next seed)."""

    patience: int = 15
    accuracy: float = 0.7
    collapse: float = 2.0
    best: float = math.inf
    left: int = field(init=False)

    def __post_init__(self) -> None:
        self.left = self.patience

    def update(self, loss: float, accuracy: float) -> tuple[bool, bool, str | None]:
        """``(improved, collapsed, stop reason or None)`` after an epoch with this summed loss and accuracy."""
        improved = loss < self.best
        collapsed = not improved and loss > self.collapse * self.best
        if improved:
            self.best, self.left = loss, self.patience
        else:
            self.left -= 1
        stop = "accuracy" if accuracy > self.accuracy else "patience" if self.left < 0 else None
        return improved, collapsed, stop


@dataclass
class LearnedToken:
    """A learned placeholder embedding for one class, and how its optimization went."""

    class_name: str
    row: torch.Tensor
    epochs: int = 0
    stop: str = "loaded"
    best_loss: float = math.nan
    accuracy: float = math.nan
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    last: torch.Tensor | None = None  # the row after the final update (``row`` is the checkpoint kept)


def optimize_token(t2i: TextToImage, classify: Callable[[torch.Tensor], torch.Tensor], *, class_name: str,
                   target: int, settings: TokenSettings = TokenSettings(), progress: bool = False) -> LearnedToken:
    """Learn the placeholder's embedding so that ``classify`` (images in [-1, 1] -> logits) says ``target``."""
    tokenizer, token_id = t2i.with_placeholder(settings.placeholder)
    splice = TokenSplice(t2i.text_encoder.get_input_embeddings(), token_id,
                         t2i.init_row(tokenizer, settings.init_token))
    opt = torch.optim.AdamW([splice.row], lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay,
                            eps=settings.eps)
    rule = StopRule(patience=settings.patience, accuracy=settings.accuracy, collapse=settings.collapse)
    prompts = [render(t, cls=class_name, token=settings.placeholder)
               for t in TRAIN_TEMPLATES[:settings.number_of_prompts]]
    goal = torch.tensor([int(target)], device=t2i.unet.device)
    kept, seed, stop, history = splice.row.detach().clone(), settings.seed, "max_epochs", []
    started = time.perf_counter()
    with t2i.spliced(splice, *([classify] if isinstance(classify, nn.Module) else [])):
        with torch.no_grad():
            null = t2i.context(tokenizer, [""])
        for epoch in tqdm(range(settings.max_epochs), disable=not progress, desc=f"token {class_name}", unit="epoch"):
            generator = torch.Generator().manual_seed(seed)  # the same noise every epoch
            total, correct = 0.0, 0
            for i in range(settings.epoch_size):
                latents = t2i.noise([generator])
                x = t2i.denoise(latents, t2i.context(tokenizer, [prompts[i % len(prompts)]]), null,
                                steps=settings.num_inference_steps, cfg_scale=settings.cfg_scale,
                                grad_steps=settings.grad_steps)
                logits = classify(t2i.decode(x)).float()
                loss = F.cross_entropy(logits, goal) / settings.epoch_size
                loss.backward()
                total += loss.item()
                correct += int(logits.argmax(1).item() == target)
            evaluated = splice.row.detach().clone()  # the token this epoch's images were drawn with
            torch.nn.utils.clip_grad_norm_([splice.row], settings.grad_clip)  # after backward (official: before)
            opt.step()
            opt.zero_grad(set_to_none=True)
            accuracy = correct / settings.epoch_size
            improved, collapsed, reason = rule.update(total, accuracy)
            history.append({"epoch": epoch + 1, "loss": total, "accuracy": accuracy, "seed": seed})
            if improved:  # the best-loss checkpoint, also when the accuracy rule stops (as published)
                kept = evaluated
            if collapsed:
                seed += 1
            if reason is not None:
                stop = reason
                break
    return LearnedToken(class_name, kept, epochs=len(history), stop=stop, best_loss=rule.best,
                        accuracy=history[-1]["accuracy"] if history else math.nan,
                        seconds=time.perf_counter() - started, history=history, last=splice.row.detach().clone())


@torch.no_grad()
def generate(t2i: TextToImage, tokens: dict[int, torch.Tensor | None], class_names: Sequence[str],
             labels: np.ndarray, seeds: np.ndarray, *, placeholder: str = "newclas", steps: int = 30,
             cfg_scale: float = 7.0, batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """uint8 images (N, H, W, 3): sample ``i`` from ``seeds[i]`` alone, prompted "A photo of <token> <class>" with
    its class's learned row (``tokens[label]``; None: the plain prompt "A photo of <class>")."""
    from synth.train_diffusion import to_uint8

    labels, seeds = np.asarray(labels), np.asarray(seeds)
    tokenizer, token_id = t2i.with_placeholder(placeholder)
    base = t2i.text_encoder.get_input_embeddings()
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for y in tqdm(np.unique(labels), disable=not progress, desc="class_tokens", unit="class"):
        row = tokens.get(int(y))
        splice = None if row is None else TokenSplice(base, token_id, row)
        prompt = render(PROMPT, cls=class_names[int(y)], token=placeholder if row is not None else None)
        where = np.flatnonzero(labels == y)
        with t2i.spliced(splice):
            context, null = t2i.context(tokenizer, [prompt]), t2i.context(tokenizer, [""])
            for start in range(0, len(where), batch_size):
                chunk = where[start:start + batch_size]
                latents = t2i.noise([torch.Generator().manual_seed(int(s)) for s in seeds[chunk]])
                n = len(chunk)
                x = t2i.denoise(latents, context.expand(n, -1, -1), null.expand(n, -1, -1), steps=steps,
                                cfg_scale=cfg_scale)
                out.append((chunk, to_uint8(t2i.decode(x))))
    size = t2i.decode(t2i.noise([torch.Generator()])).shape[-1] if not out else out[0][1].shape[1]
    images = np.zeros((len(labels), size, size, 3), dtype=np.uint8)
    for chunk, block in out:
        images[chunk] = block
    return images


def save_token(path: Path, token: LearnedToken, *, base_model: str, settings: TokenSettings) -> None:
    """The learned row as safetensors (``embedding`` [1, d]) with its class, base model and settings as metadata."""
    from safetensors.torch import save_file

    meta = {"class_name": token.class_name, "base_model": base_model, "placeholder": settings.placeholder,
            "settings": json.dumps(asdict(settings)), "epochs": str(token.epochs), "stop": token.stop,
            "best_loss": repr(token.best_loss)}
    save_file({"embedding": token.row.detach().cpu().float().reshape(1, -1).contiguous()}, str(path), metadata=meta)


def load_token(path: Path) -> tuple[LearnedToken, dict]:
    """A token saved by :func:`save_token` and its metadata (class, base model, settings)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        row = f.get_tensor("embedding")
    if "class_name" not in meta:
        raise UsageError(f"{path} is not a class token file (no class_name in its metadata)")
    return LearnedToken(meta["class_name"], row, epochs=int(meta.get("epochs", 0))), meta


# --- the synth method ------------------------------------------------------------------------
TOKEN_DIR = "class_tokens"


@dataclass(frozen=True, kw_only=True)
class ClassTokensConfig(SynthOptions):
    classifier_model: str | None = option(
        None, help="registry classifier that the tokens are optimized against, when no `train` step is wired to "
                   "inputs.classifier; never the filter")
    classifier_weights: str | None = option("default", help="weights of classifier_model")
    tokens: str | None = option(None, help="folder of saved tokens (<class>.safetensors, an earlier run's "
                                           "class_tokens/) to generate with instead of optimizing")
    placeholder: str = option("newclas", help="the new token's text")
    init_token: str = option("a", help="the token whose embedding starts the placeholder's")
    lr: float = option(1.25e-3, gt=0, help="AdamW learning rate of the token (official 2.5e-4 x 5)")
    weight_decay: float = option(1e-2, ge=0, help="AdamW weight decay (applies to the token row only)")
    epoch_size: int = option(5, gt=0, help="generations accumulated into one update (one epoch)")
    max_epochs: int = option(50, gt=0)
    patience: int = option(15, ge=0, help="epochs without a better loss before stopping")
    accuracy_threshold: float = option(0.7, ge=0, le=1, help="stop when an epoch's accuracy exceeds this")
    train_seed: int = option(35, help="noise seed, reset at every epoch (bumped after a collapse)")
    train_steps: int = option(30, gt=0, help="denoising steps of each optimization generation")
    num_inference_steps: int = option(30, gt=0, help="denoising steps of the generated samples")
    cfg_scale: float = option(7.0, ge=0, help="classifier-free guidance, diffusers' scale (1: conditional only)")
    grad_clip: float = option(1.0, gt=0, help="gradient-norm clip of the accumulated update")
    grad_steps: int = option(1, gt=0, help="final denoising steps the gradient flows through (1: the paper's; "
                                           "more is a departure that costs memory per step)")

    def settings(self) -> TokenSettings:
        return TokenSettings(placeholder=self.placeholder, init_token=self.init_token, lr=self.lr,
                             weight_decay=self.weight_decay, epoch_size=self.epoch_size, max_epochs=self.max_epochs,
                             patience=self.patience, accuracy=self.accuracy_threshold, seed=self.train_seed,
                             num_inference_steps=self.train_steps, cfg_scale=self.cfg_scale, grad_clip=self.grad_clip,
                             grad_steps=self.grad_steps)


class ClassTokensMethod:
    """Learn one discriminative token per class against a classifier, then prompt "A photo of <token> <class>"."""

    Config = ClassTokensConfig
    conditioning: ClassVar[str] = "text"

    def prepare(self, cfg: ClassTokensConfig, inputs: SynthInputs, *, base_seed: int, device: str,
                progress: bool) -> Guide:
        from synth.guidance import PixelClassifier
        from synth.scorers import model_scorer

        t2i = TextToImage.from_diffusion(inputs.diffusion)
        names = list(inputs.class_names)
        wanted = names if cfg.classes is None else list(cfg.classes)
        if cfg.tokens is not None:
            return Guide(component=self._load(Path(cfg.tokens), names, wanted), scorer=None,
                         metrics={"tokens_from": cfg.tokens})
        if inputs.classifier is None:
            raise UsageError("method class_tokens optimizes against a classifier: wire a `train` step to "
                             "inputs.classifier or name a registry model in with.classifier_model")
        t2i.to(device)
        classify = PixelClassifier(inputs.classifier).to(device)
        settings, base = cfg.settings(), str(inputs.diffusion.folder or "model")
        learned = {names.index(c): optimize_token(t2i, classify, class_name=c, target=names.index(c),
                                                  settings=settings, progress=progress) for c in wanted}
        files = {f"{TOKEN_DIR}/{tok.class_name}.safetensors":
                 (lambda p, tok=tok: save_token(p, tok, base_model=base, settings=settings)) for tok in learned.values()}
        metrics = {"token_epochs": {t.class_name: t.epochs for t in learned.values()},
                   "token_stop": {t.class_name: t.stop for t in learned.values()},
                   "token_best_loss": {t.class_name: round(t.best_loss, 4) for t in learned.values()},
                   "token_seconds": {t.class_name: round(t.seconds, 1) for t in learned.values()}}
        return Guide(component={k: t.row for k, t in learned.items()},
                     scorer=model_scorer(inputs.classifier, name=inputs.classifier_name, device=device),
                     files=files, metrics=metrics)

    @staticmethod
    def _load(folder: Path, names: list[str], wanted: list[str]) -> dict[int, torch.Tensor]:
        rows = {}
        for c in wanted:
            path = folder / f"{c}.safetensors"
            if not path.is_file():
                raise UsageError(f"with.tokens: no {path.name} in {folder}; optimize that class first")
            rows[names.index(c)] = load_token(path)[0].row
        return rows

    def generate(self, cfg: ClassTokensConfig, inputs: SynthInputs, guide: Guide, *, labels: np.ndarray,
                 numbers: np.ndarray, seeds: np.ndarray, device: str, progress: bool) -> Generated:
        t2i = TextToImage.from_diffusion(inputs.diffusion)
        missing = sorted({inputs.class_names[int(y)] for y in labels} - {inputs.class_names[k] for k in guide.component})
        if missing:
            raise UsageError(f"no class token for {missing[0]!r}; list it in with.classes")
        t2i.to(device)
        images = generate(t2i, guide.component, inputs.class_names, labels, seeds, placeholder=cfg.placeholder,
                          steps=cfg.num_inference_steps, cfg_scale=cfg.cfg_scale, batch_size=cfg.batch_size,
                          progress=progress)
        return Generated(images=images, labels=labels, numbers=numbers, seeds=seeds,
                         guidance_scale=np.full(len(labels), cfg.cfg_scale, dtype=np.float32))
