"""Offline building blocks for the pipelines' tiny random models (tests, demos, CPU benchmarks)."""

from __future__ import annotations

from typing import Any


def char_tokenizer(cls: Any, model_max_length: int = 77, **special: str) -> Any:
    """A character-level tokenizer of class ``cls`` (a transformers fast tokenizer), made with no download.

    ``special`` names its special tokens (``eos_token="</s>"``, ...); they come first in the vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = list(dict.fromkeys([*special.values(), "<unk>", "\u2581"])) + [chr(c) for c in range(33, 127)]
    tokenizer = Tokenizer(models.Unigram([(token, -1.0) for token in vocab], unk_id=vocab.index("<unk>")))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    return cls(tokenizer_object=tokenizer, unk_token="<unk>", model_max_length=model_max_length, **special)  # noqa: S106
