"""The offline tokenizer: every word it was built from is one token, whatever merges the other words bring."""

import random

import pytest

from synth.text_conditioning import EXTRA_WORDS, TRAIN_TEMPLATES, build_tokenizer, words_of


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
