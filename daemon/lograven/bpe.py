"""BPE tokenizer (HF `tokenizers`) for the autoencoder, as in seed 000.

Encoding is cached per whitespace-separated word: the pre-tokenizer never
merges across whitespace, so encoding word by word gives exactly the ids of
encoding the whole line, and words repeat so often in logs that almost every
lookup is a hit (the library's own encode costs ~40 us a line).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np

from lograven.errors import LogravenError
from lograven.masking import PLACEHOLDERS

PAD, UNK = "[PAD]", "[UNK]"


# the parts of a tokenizer.json lograven trains (train_tokenizer): a file may hold nothing else. The
# library would run any normalizer or pre-tokenizer it names, such as a Split on a backtracking regex (a
# review: a 34-letter word then made the Rust code panic, an exception no `except Exception` catches,
# and every restart met the line again)
_AS_TRAINED = {"truncation": None, "padding": None, "normalizer": None,
               "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None}
_BPE_OPTIONS = {"type": "BPE", "dropout": None, "continuing_subword_prefix": None, "end_of_word_suffix": None}


def _not_as_trained(doc) -> str | None:
    """What in a parsed tokenizer.json is not as lograven trains it, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    for key, want in _AS_TRAINED.items():
        if doc.get(key) != want:
            return f"{key} is {json.dumps(doc.get(key))[:80]}, not {json.dumps(want)}"
    model = doc.get("model")
    if not isinstance(model, dict):
        return "no model"
    for key, want in _BPE_OPTIONS.items():
        if model.get(key) != want:
            return f"model.{key} is {json.dumps(model.get(key))[:80]}, not {json.dumps(want)}"
    added = doc.get("added_tokens", [])
    if not isinstance(added, list) or not all(isinstance(t, dict) and isinstance(t.get("content"), str) for t in added):
        return "added_tokens is not a list of tokens"
    return None


class BpeTokenizer:
    """Trains and applies a byte-pair-encoding vocabulary over masked log text."""

    CACHE_BYTES = 16 * 2**20  # about: words and their id lists, with object overhead

    def __init__(self, tokenizer: object, cache_size: int = 200_000, cache_bytes: int = CACHE_BYTES):
        self._tok = tokenizer
        # bounded by entries and by bytes: a long unique word is hundreds of ids (36 bytes each)
        self._cache: dict[str, list[int]] = {}
        self._cache_size = cache_size
        self._cache_bytes_max = cache_bytes
        self._cache_bytes = 0
        self.vocab_size = int(tokenizer.get_vocab_size())  # type: ignore[attr-defined]
        self.unk_id = int(tokenizer.token_to_id(UNK))  # type: ignore[attr-defined]

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, extra_tokens: Sequence[str] = ()) -> BpeTokenizer:
        from tokenizers import Tokenizer
        from tokenizers.models import BPE
        from tokenizers.pre_tokenizers import Whitespace
        from tokenizers.trainers import BpeTrainer

        tok = Tokenizer(BPE(unk_token=UNK))
        tok.pre_tokenizer = Whitespace()
        specials = [PAD, UNK, *dict.fromkeys([*PLACEHOLDERS, "<DATE>", *extra_tokens])]
        trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_str(cls, data: str, source: str = "tokenizer.json") -> BpeTokenizer:
        from tokenizers import Tokenizer

        try:
            doc = json.loads(data)
        except ValueError as e:
            raise LogravenError(f"{source}: not a valid tokenizer ({e}); retrain with `lograven train`") from e
        if (problem := _not_as_trained(doc)) is not None:
            raise LogravenError(f"{source}: not a tokenizer lograven trains ({problem}); retrain with `lograven train`")
        try:
            tok = Tokenizer.from_str(data)
        except Exception as e:  # the library raises its own exception types
            raise LogravenError(f"{source}: not a valid tokenizer ({e}); retrain with `lograven train`") from e
        if tok.token_to_id(UNK) is None:
            raise LogravenError(f"{source}: tokenizer has no {UNK} token; retrain with `lograven train`")
        return cls(tok)

    def grow(
        self, texts: Iterable[str], *, known: Iterable[str] = (), min_count: int = 3, max_new: int = 256, min_pieces: int = 3
    ) -> list[str]:
        """Add frequent new words as whole-word tokens (the corrective action's vocabulary growth).

        A word becomes a token when it occurs at least `min_count` times in `texts`
        and BPE needs `min_pieces` or more pieces (or [UNK]) for it. Words of the
        `known` texts (what the model was trained on) are never added, so old texts
        keep their encoding. Existing ids never change; new ids are appended.
        Returns the added words.
        """
        from collections import Counter

        from tokenizers import AddedToken

        seen = {w for t in known for w in t.split()}
        counts = Counter(w for t in texts for w in t.split() if w not in seen)
        candidates = []
        for word, c in counts.most_common():
            if c < min_count or len(candidates) >= max_new:
                break
            if word in self._tok.get_vocab():  # type: ignore[attr-defined]
                continue
            ids = self.encode(word)
            if len(ids) >= min_pieces or self.unk_id in ids:
                candidates.append(word)
        if candidates:
            # single_word: an added token only matches a whole word, so old words keep their encoding
            self._tok.add_tokens([AddedToken(w, single_word=True, normalized=False) for w in candidates])  # type: ignore[attr-defined]
            self.vocab_size = int(self._tok.get_vocab_size())  # type: ignore[attr-defined]
            self._cache.clear()
            self._cache_bytes = 0
        return candidates

    def to_str(self) -> str:
        return self._tok.to_str()  # type: ignore[attr-defined]

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """Token ids of one (masked) text, cached per word; with `limit`, those of its first words that
        give at least `limit` ids (the autoencoder reads its first `length_`)."""
        out: list[int] = []
        cache = self._cache
        for word in text.split():
            if limit is not None and len(out) >= limit:
                break
            ids = cache.get(word)
            if ids is None:
                ids = self._tok.encode(word).ids  # type: ignore[attr-defined]
                cost = 200 + len(word) + 36 * len(ids)
                if len(cache) >= self._cache_size or self._cache_bytes + cost > self._cache_bytes_max:
                    cache.clear()
                    self._cache_bytes = 0
                cache[word] = ids
                self._cache_bytes += cost
            out.extend(ids)
        return out

    def encode_direct(self, text: str) -> list[int]:
        """The library's own whole-line encoding (used by tests to check the cache)."""
        return self._tok.encode(text).ids  # type: ignore[attr-defined]


def tile(ids: list[int], length: int, pad_id: int = 0) -> tuple[np.ndarray, int]:
    """Seed 000's fixed-length input: the ids repeated until `length`, truncated.

    Returns the row and how many leading positions are real tokens (≤ length).
    """
    n = len(ids)
    row = np.full(length, pad_id, dtype=np.int32)
    if n == 0:
        return row, 0
    reps = -(-length // n)
    row[:] = (ids * reps)[:length]
    return row, min(n, length)


def tile_batch(id_lists: Sequence[list[int]], length: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.zeros((len(id_lists), length), dtype=np.int32)
    lens = np.zeros(len(id_lists), dtype=np.int32)
    for i, ids in enumerate(id_lists):
        rows[i], lens[i] = tile(ids, length)
    return rows, lens
