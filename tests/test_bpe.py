"""BPE tokenizer: the per-word cache equals the library's whole-line encoding; tiling."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lograven.bpe import PAD, UNK, BpeTokenizer, tile, tile_batch
from lograven.errors import LogravenError
from lograven.generator import LogGenerator
from lograven.masking import PLACEHOLDERS, Masker

from conftest import parse


def ae_texts(lines) -> list[str]:
    """Masked `program message` texts, the autoencoder's input."""
    m = Masker()
    out = []
    for text in lines:
        r = parse(text)
        out.append(m.mask_text(f"{r.program} {r.message}" if r.program else r.message))
    return out


@pytest.fixture(scope="module")
def train_texts() -> list[str]:
    return ae_texts(LogGenerator(seed=3).lines(2000))


@pytest.fixture(scope="module", params=[128, 512], ids=["vocab128", "vocab512"])
def tokenizer(request, train_texts) -> BpeTokenizer:
    return BpeTokenizer.train(train_texts, request.param)


@pytest.fixture(scope="module")
def test_texts() -> list[str]:
    """Unseen lines of every kind, anomalies and malformed lines included."""
    return ae_texts(g.text for g in LogGenerator(seed=11).generate(400, anomaly_rate=0.2))


def test_cached_encode_equals_library_encode(tokenizer: BpeTokenizer, test_texts: list[str]) -> None:
    assert len(test_texts) == 400
    for t in test_texts:
        assert tokenizer.encode(t) == tokenizer.encode_direct(t), t
    # and again, now served from the cache
    for t in test_texts[:50]:
        assert tokenizer.encode(t) == tokenizer.encode_direct(t), t


def test_special_tokens_are_single_ids(tokenizer: BpeTokenizer) -> None:
    for p in (*PLACEHOLDERS, "<DATE>"):
        ids = tokenizer.encode(p)
        assert len(ids) == 1 and ids[0] != tokenizer.unk_id, p
    assert tokenizer._tok.token_to_id(PAD) == 0  # tile pads with 0: it must be [PAD]
    assert tokenizer.unk_id == tokenizer._tok.token_to_id(UNK)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.text(alphabet=st.sampled_from(list("ab xyz<>N=:.-_/()[]0\t\x1f")), max_size=60)))
def test_cached_encode_equals_library_encode_on_odd_masked_text(text: str) -> None:
    """Any text as the autoencoder sees it (through Masker.mask_text), unicode and control bytes included."""
    tok = _small_tokenizer()
    masked = Masker().mask_text(text)
    assert tok.encode(masked) == tok.encode_direct(masked)


def test_per_word_encoding_needs_normalised_whitespace() -> None:
    """Documents the contract: str.split() treats \x1c-\x1f as whitespace, the BPE pre-tokenizer
    does not, so only mask_text-normalised text (what the pipeline feeds) is safe to cache per word."""
    tok = _small_tokenizer()
    raw = "a\x1fb"
    assert tok.encode(raw) != tok.encode_direct(raw)
    masked = Masker().mask_text(raw)
    assert masked == "a b"
    assert tok.encode(masked) == tok.encode_direct(masked)


_SMALL: list[BpeTokenizer] = []


def _small_tokenizer() -> BpeTokenizer:
    if not _SMALL:
        _SMALL.append(BpeTokenizer.train(ae_texts(LogGenerator(seed=3).lines(300)), 128))
    return _SMALL[0]


def test_cache_is_bounded_and_still_correct(train_texts: list[str]) -> None:
    tok = BpeTokenizer.train(train_texts[:300], 128)
    tok._cache_size = 8
    for t in train_texts[:100]:
        assert tok.encode(t) == tok.encode_direct(t)
    assert len(tok._cache) <= 8


def test_cache_is_bounded_in_bytes_for_long_unique_words(train_texts: list[str]) -> None:
    """Unique long words (a session token in a URL) are hundreds of ids each: the cache empties at its
    byte budget, long before its entry cap, and encodes as the library does."""
    import base64
    import random

    tok = BpeTokenizer.train(train_texts[:300], 128)
    tok._cache_bytes_max = 200_000
    rnd = random.Random(5)
    words = [base64.urlsafe_b64encode(rnd.randbytes(600)).decode() for _ in range(60)]
    peak = 0
    for w in words:
        assert tok.encode(f"GET /api?s={w} ok") == tok.encode_direct(f"GET /api?s={w} ok")
        peak = max(peak, tok._cache_bytes)
        assert tok._cache_bytes <= 200_000
    assert len(tok._cache) < 60 and peak > 100_000  # it did fill and empty


def test_relearning_grows_the_vocabulary_up_to_its_cap(train_texts: list[str]) -> None:
    """Each relearn may add up to 256 whole words, but the vocabulary stops at VOCABULARY_GROWTH times
    its trained size (the output layer is the cost of every uncached line); words past the cap still
    encode, in pieces."""
    import random

    from lograven.learning import VOCABULARY_GROWTH, grow_vocabulary

    tok = BpeTokenizer.train(train_texts[:300], 128)
    rnd = random.Random(8)
    cap = VOCABULARY_GROWTH * 128
    added = []
    for _ in range(4):  # four relearns, each with 400 new pod names seen 3 times
        pods = ["web-" + "".join(rnd.choice("bcdfghjklmnpqrstvwxz") for _ in range(10)) for _ in range(400)]
        added.append(len(grow_vocabulary(tok, [f"pod {p} ready" for p in pods * 3], train_texts[:300], 128)))
    assert added[0] == 256 and tok.vocab_size == cap and added[-1] == 0
    assert tok._cache_bytes == sum(200 + len(w) + 36 * len(ids) for w, ids in tok._cache.items())  # counter reset with the cache
    word = "web-" + "q" * 12
    assert tok.encode(f"pod {word} ready") == tok.encode_direct(f"pod {word} ready")


def test_to_str_from_str_roundtrip(tokenizer: BpeTokenizer, test_texts: list[str]) -> None:
    again = BpeTokenizer.from_str(tokenizer.to_str())
    assert again.vocab_size == tokenizer.vocab_size
    assert [again.encode(t) for t in test_texts[:100]] == [tokenizer.encode(t) for t in test_texts[:100]]


@pytest.mark.parametrize("data", ["not json", "{}", '{"model": 3}'])
def test_from_str_invalid_raises_project_error(data: str) -> None:
    with pytest.raises(LogravenError, match="tok.json"):
        BpeTokenizer.from_str(data, "tok.json")


# ---------------------------------------------------------------- tile


def test_tile_repeats_then_truncates() -> None:
    row, n = tile([1, 2, 3], 7)
    assert row.tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert n == 3
    assert row.dtype == np.int32


def test_tile_exact_and_longer_than_length() -> None:
    row, n = tile([4, 5, 6, 7], 4)
    assert row.tolist() == [4, 5, 6, 7] and n == 4
    row, n = tile(list(range(1, 11)), 4)
    assert row.tolist() == [1, 2, 3, 4] and n == 4  # the real length is capped at the row length


def test_tile_empty_is_padding() -> None:
    row, n = tile([], 5)
    assert row.tolist() == [0] * 5 and n == 0
    row, n = tile([], 3, pad_id=9)
    assert row.tolist() == [9, 9, 9] and n == 0


def test_tile_batch_rows_and_lengths() -> None:
    rows, lens = tile_batch([[1], [1, 2], [], list(range(10, 20))], 4)
    assert rows.tolist() == [[1, 1, 1, 1], [1, 2, 1, 2], [0, 0, 0, 0], [10, 11, 12, 13]]
    assert lens.tolist() == [1, 2, 0, 4]


@given(st.lists(st.integers(1, 500), max_size=40), st.integers(1, 64))
def test_tile_property(ids: list[int], length: int) -> None:
    row, n = tile(ids, length)
    assert row.shape == (length,)
    assert n == min(len(ids), length)
    if ids:
        assert all(row[i] == ids[i % len(ids)] for i in range(length))
