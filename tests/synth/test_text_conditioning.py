"""The offline tokenizer (every word it was built from is one token, whatever merges the other words bring) and
the tone words that give the slot before the class a meaning."""

import random

import numpy as np
import pytest

from synth.text_conditioning import (EXTRA_WORDS, TONE_TEMPLATES, TONES, TRAIN_TEMPLATES, build_tokenizer,
                                     image_tones, text_conditioner, toned_prompts, words_of)


def _split_words(tokenizer, words):
    return [w for w in words if len(tokenizer(w, add_special_tokens=False).input_ids) != 1]


def test_a_word_whose_character_chain_an_earlier_word_cuts_is_still_one_token():
    """"red" merges r+e first; a plain character chain per word left "green" as g re e n."""
    words = words_of(["frog red green gray evergreen reed", *TRAIN_TEMPLATES, EXTRA_WORDS])
    tokenizer = build_tokenizer(words)
    assert _split_words(tokenizer, words) == []
    assert tokenizer.convert_ids_to_tokens(tokenizer("green", add_special_tokens=False).input_ids) == ["green</w>"]
    assert len(tokenizer("zebra", add_special_tokens=False).input_ids) > 1  # unknown words fall back to pieces


@pytest.mark.parametrize("seed", range(5))
def test_random_vocabularies_over_few_letters_tokenize_whole(seed):
    """Many short words over 2-5 letters share every pair: the hardest case for merge conflicts."""
    rng = random.Random(seed)
    words = list(dict.fromkeys("".join(rng.choice("abcde"[:rng.randint(2, 5)]) for _ in range(rng.randint(1, 8)))
                                for _ in range(60)))
    assert _split_words(build_tokenizer(words), words) == []


def test_image_tones_name_the_mean_colour():
    colours = [(0, 0, 0), (250, 250, 250), (200, 60, 60), (60, 180, 60), (60, 60, 200), (120, 120, 120)]
    images = np.array(colours, dtype=np.uint8)[:, None, None, :].repeat(4, 1).repeat(4, 2)
    assert image_tones(images).tolist() == ["dark", "bright", "red", "green", "blue", "gray"]


def test_toned_prompts_put_the_tone_in_the_slot_before_the_class_for_about_half_the_rows():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (200, 4, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, 200)
    prompts = toned_prompts(images, labels, ["frog", "ship"], seed=3)
    tones = image_tones(images)
    plain = {t.format(c) for t in TRAIN_TEMPLATES for c in ("frog", "ship")}
    toned = [i for i, p in enumerate(prompts) if p not in plain]
    assert 70 < len(toned) < 130 and prompts == toned_prompts(images, labels, ["frog", "ship"], seed=3)
    for i in toned:
        assert prompts[i] in {t.format(tones[i], ["frog", "ship"][labels[i]]) for t in TONE_TEMPLATES}
    assert all(prompts[i].endswith(["frog", "ship"][labels[i]]) for i in range(len(prompts)))
    tokenizer = text_conditioner(["frog", "ship"], context_dim=8, tones=True).tokenizer
    assert _split_words(tokenizer, [*TONES, *words_of(TONE_TEMPLATES)]) == []
