"""Tokenizers built offline with the ``tokenizers`` library, wrapped for transformers.

Nothing here downloads: a byte-level BPE is trained on text the caller supplies, so a
tokenizer (and a model on top of it) can be made on a machine without a hub.
"""

from __future__ import annotations

from typing import Iterable

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE trained on ``texts`` (pad/bos/eos/unk special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(list(texts), trainer=trainer)
    return _wrap(core)


def build_char_tokenizer(alphabet: str):
    """One token per character of ``alphabet`` (plus the special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in dict.fromkeys(alphabet):
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    return _wrap(core)


def _wrap(core):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
