"""Text conditioning of a small diffusion UNet: a CLIP text encoder built from a config, trained with the UNet.

So text-to-image methods (:mod:`synth.class_tokens`) can be run and tested without downloaded weights,
``train_diffusion`` can condition a ``UNet2DConditionModel`` on prompts made from the class names with a
few templates. The tokenizer is a ``CLIPTokenizer`` built offline from a vocabulary of the byte symbols
(with and without the end-of-word mark), BPE merges that make each word of the class names and templates
one token, and CLIP's start/end tokens; unknown words fall back to their characters, so any prompt tokenizes.

:class:`TextConditioner` plugs into the conditioning seam of :mod:`synth.conditioning`: its input is a
row of token ids (what ``train_ddpm`` calls embeddings), its context the text encoder's last hidden
states ``(B, L, d)``, and its null context the encoding of the empty prompt, as Stable Diffusion's
classifier-free guidance uses. A saved model has ``tokenizer/`` and ``text_encoder/`` beside ``unet/``
and ``scheduler/``, the layout of a diffusers Stable Diffusion folder.
"""

from __future__ import annotations

import heapq
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from curate.errors import UsageError

TRAIN_TEMPLATES = ("a photo of a {}", "a picture of the {}", "an image of a {}", "{}")
"""Prompts of a training row: its class name in one of these, drawn per row from the seed."""
TONES = ("dark", "bright", "red", "green", "blue", "gray")
"""``tone_words``: one word per image from its mean colour (:func:`image_tones`)."""
TONE_TEMPLATES = ("a photo of {} {}", "an image of a {} {}", "a close up photo of a {} {}")
"""``tone_words`` prompts: the tone in the word slot before the class, where class tokens go later."""
EXTRA_WORDS = "a high resolution realistic image of close up photo the picture an"
"""Words of the class-token templates, so they tokenize as whole words too."""
TOKENIZER_DIR = "tokenizer"
TEXT_ENCODER_DIR = "text_encoder"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def words_of(texts: Sequence[str]) -> list[str]:
    """The lowercase words of ``texts`` (CLIP's tokenizer lowercases and splits on non-letters), in first-seen order."""
    return list(dict.fromkeys(w for t in texts for w in re.findall(r"[a-z]+", t.lower())))


def build_tokenizer(words: Sequence[str]):
    """A ``CLIPTokenizer`` whose vocabulary has every byte symbol and one token per word of ``words``.

    Each word gets merges that join, left to right, the pieces the earlier words' merges leave of it, ranked
    after them: a plain character chain per word could be cut by an earlier word's merge ("red" merges ``r e``
    first, so "green" would end as ``g re e n``), and merges ranked last never interrupt a word already whole.
    """
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    known = set(vocab)
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        pieces = _bpe(word, ranks)
        while len(pieces) > 1:  # each pass merges at least the first two pieces: it ends
            ranks[pieces[0], pieces[1]] = len(ranks)
            if pieces[0] + pieces[1] not in known:
                known.add(pieces[0] + pieces[1])
                vocab.append(pieces[0] + pieces[1])
            pieces = _bpe(word, ranks)
    vocab += [BOS, EOS]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=list(ranks))


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """``word``'s pieces under ``ranks`` as the fast tokenizer's BPE merges them: the lowest-ranked adjacent pair
    first, the leftmost among equals, pairs formed by a merge competing at once."""
    pieces: list[str | None] = [*word[:-1], word[-1] + "</w>"]
    after = list(range(1, len(pieces))) + [None]
    before = [None, *range(len(pieces) - 1)]
    heap = [(ranks[pair], i) for i, pair in enumerate(zip(pieces, pieces[1:])) if pair in ranks]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = after[i]
        if pieces[i] is None or j is None or ranks.get((pieces[i], pieces[j])) != rank:
            continue  # stale: a piece of this pair merged elsewhere first
        pieces[i], pieces[j], after[i] = pieces[i] + pieces[j], None, after[j]
        if after[i] is not None:
            before[after[i]] = i
        for left in (before[i], i):
            if left is not None and after[left] is not None:
                pair = (pieces[left], pieces[after[left]])
                if pair in ranks:
                    heapq.heappush(heap, (ranks[pair], left))
    return [p for p in pieces if p is not None]


def build_text_encoder(tokenizer, *, hidden_size: int, layers: int = 2, heads: int = 4, max_length: int = 24,
                       seed: int = 0):
    """A random ``CLIPTextModel`` of ``layers`` x ``hidden_size`` over ``tokenizer``'s vocabulary, seeded."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if hidden_size % heads:
        raise UsageError(f"`context_dim` {hidden_size} must be divisible by the {heads} text attention heads")
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=max_length,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModel(config)


class TextConditioner(nn.Module):
    """Token ids ``(B, L)`` -> the text encoder's last hidden states ``(B, L, d)``; dropped rows read the empty prompt."""

    kind = "cross_attention"

    def __init__(self, tokenizer, text_encoder: nn.Module):
        super().__init__()
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.context_dim = int(text_encoder.config.hidden_size)
        self.max_length = int(text_encoder.config.max_position_embeddings)

    def config(self) -> dict:
        return {"kind": "text", "context_dim": self.context_dim, "max_length": self.max_length}

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(B, max_length)`` of ``prompts``, padded and truncated as the model was trained."""
        return self.tokenizer(list(prompts), padding="max_length", max_length=self.max_length, truncation=True,
                              return_tensors="pt").input_ids

    def forward(self, ids: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        device = self.text_encoder.device
        ids = ids.to(device=device, dtype=torch.long)
        if drop is not None:
            ids = torch.where(drop.to(device)[:, None], self.encode([""]).to(device), ids)
        return self.text_encoder(ids).last_hidden_state

    def null(self, batch: int) -> torch.Tensor:
        return self(self.encode([""] * batch))

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(Path(folder) / TOKENIZER_DIR)
        self.text_encoder.save_pretrained(Path(folder) / TEXT_ENCODER_DIR, safe_serialization=True)

    @classmethod
    def load(cls, folder: Path) -> "TextConditioner":
        """From a folder with ``tokenizer/`` and ``text_encoder/`` (a curate text model or a Stable Diffusion folder)."""
        from transformers import CLIPTextModel, CLIPTokenizer

        folder = Path(folder)
        return cls(CLIPTokenizer.from_pretrained(folder / TOKENIZER_DIR),
                   CLIPTextModel.from_pretrained(folder / TEXT_ENCODER_DIR)).eval()


def has_text_encoder(folder: Path) -> bool:
    return (Path(folder) / TEXT_ENCODER_DIR).is_dir() and (Path(folder) / TOKENIZER_DIR).is_dir()


def text_conditioner(class_names: Sequence[str], *, context_dim: int, layers: int = 2, seed: int = 0,
                     extra_templates: Sequence[str] = (), tones: bool = False) -> TextConditioner:
    """A fresh tokenizer and text encoder for prompts about ``class_names`` (and the words of ``extra_templates``;
    with ``tones``, of :data:`TONES` and :data:`TONE_TEMPLATES`)."""
    toned = (" ".join(TONES), *TONE_TEMPLATES) if tones else ()
    words = words_of([*class_names, *TRAIN_TEMPLATES, EXTRA_WORDS, *extra_templates, *toned])
    tokenizer = build_tokenizer(words)
    return TextConditioner(tokenizer, build_text_encoder(tokenizer, hidden_size=context_dim, layers=layers,
                                                         seed=seed)).eval()


def class_prompts(labels: np.ndarray, class_names: Sequence[str], *, seed: int,
                  templates: Sequence[str] = TRAIN_TEMPLATES) -> list[str]:
    """One prompt per row: its class name in a template drawn from ``seed``."""
    pick = np.random.default_rng(seed).integers(len(templates), size=len(labels))
    return [templates[k].format(class_names[int(y)]) for k, y in zip(pick, np.asarray(labels))]


def training_prompts(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, seed: int,
                     tones: bool) -> list[str]:
    """The prompt of each training row: :func:`toned_prompts` with ``tones`` (``text_conditioner(tones=True)``'s
    vocabulary), else :func:`class_prompts`."""
    if tones:
        return toned_prompts(images, labels, class_names, seed=seed)
    return class_prompts(labels, class_names, seed=seed)


def image_tones(images: np.ndarray) -> np.ndarray:
    """One of :data:`TONES` per uint8 NHWC image from its mean colour: dark or bright by luminance (below 0.3, above
    0.62), else the channel above the luminance by more than 0.04, else gray."""
    rgb = np.asarray(images, dtype=np.float32).mean(axis=(1, 2)) / 255
    lum = rgb.mean(1)
    lead = rgb - lum[:, None]
    hue = np.where(lead.max(1) > 0.04, np.array(TONES[2:5])[lead.argmax(1)], "gray")
    return np.where(lum < 0.3, "dark", np.where(lum > 0.62, "bright", hue))


def toned_prompts(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, seed: int) -> list[str]:
    """Half the rows (drawn from ``seed``) name their image's tone before the class in a :data:`TONE_TEMPLATES`
    prompt ("a photo of dark frog"); the others get :func:`class_prompts`.

    A model trained on class prompts alone learns to ignore the word before the class (always "a" or "the"), so a
    class token placed there has nothing to steer; with tones in that slot the model listens to it, as Stable
    Diffusion listens to adjectives."""
    rng = np.random.default_rng(seed + 1)
    plain, tones = class_prompts(labels, class_names, seed=seed), image_tones(images)
    pick, toned = rng.integers(len(TONE_TEMPLATES), size=len(labels)), rng.random(len(labels)) < 0.5
    return [TONE_TEMPLATES[k].format(t, class_names[int(y)]) if m else p
            for p, t, y, k, m in zip(plain, tones, np.asarray(labels), pick, toned)]
