"""Masking of obvious variables: placeholders, dates, what is left alone."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lograven.masking import PLACEHOLDER_REGEX, ExtraMask, Masker, is_fully_variable


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker()


@pytest.mark.parametrize(
    ("token", "masked"),
    [
        ("4242", "<N>"),
        ("-12", "<N>"),
        ("offset=-12", "offset=<N>"),
        ("x-86", "x-<N>"),  # a dash between alphanumerics is not a sign
        ("(uid=0)", "(uid=<N>)"),
        ("10.0.0.1", "<IP>"),
        ("192.168.1.20:22", "<IP>"),  # the port belongs to the address
        ("fe80::1", "<IP>"),
        ("2001:db8::ff00:42:8329", "<IP>"),
        ("SRC=2001:db8::1", "SRC=<IP>"),
        ("aa:bb:cc:dd:ee:ff", "<MAC>"),
        ("00:1A:2B:3C:4D:5E:08:00", "<MAC>"),  # iptables-style MAC+ethertype
        ("123e4567-e89b-12d3-a456-426614174000", "<UUID>"),
        ("0x7fff", "<HEX>"),
        ("0X1F", "<HEX>"),
        ("deadbeef12", "<HEX>"),
        ("7f3a9c2e", "<HEX>"),
        ("12345678", "<N>"),  # all digits: a number, not a hex id
    ],
)
def test_variables_become_placeholders(masker: Masker, token: str, masked: str) -> None:
    assert masker.mask_token(token) == masked


@pytest.mark.parametrize(
    "word", ["session", "opened", "eth", "Accepted", "std::vector", "::", "a::b", "deadbeef", "[preauth]", "pam_unix(sshd:session):"]
)
def test_words_unchanged(masker: Masker, word: str) -> None:
    assert masker.mask_token(word) == word


def test_mask_text_normalises_whitespace_and_masks_each_token(masker: Masker) -> None:
    text = "  Accepted publickey for alice from 10.1.2.3 port 50022   ssh2 "
    # digits inside words are masked too (`eth0`, `ssh2`): a suffix number is usually an index
    assert masker.mask_text(text) == "Accepted publickey for alice from <IP> port <N> ssh<N>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sat Jul  9 22:53:19 2005", "<DATE>"),
        ("last login Sat Jul  9 22:53:19 2005 from tty1", "last login <DATE> from tty1"),
        ("Jul 9 22:53:19 cron ran", "<DATE> cron ran"),
        ("at 2024-01-02 03:04:05,123 ok", "at <DATE> ok"),
        ("at 2024-01-02 03:04:05+02:00 ok", "at <DATE> ok"),
        ("no date here", "no date here"),
    ],
)
def test_premask_collapses_dates(text: str, expected: str) -> None:
    assert Masker.premask(text) == expected
    assert len(Masker.premask(text).split()) == len(expected.split())


def test_mask_text_keeps_date_one_token(masker: Masker) -> None:
    assert masker.mask_text("Sat Jul  9 22:53:19 2005 pid 17") == "<DATE> pid <N>"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("<IP>", True),
        ("(<N>)", True),
        ("<N>:<N>", True),
        ("[<HEX>]", True),
        ("port=<N>", False),
        ("<IP>x", False),
        ("abc", False),
        ("", False),
        ("123", False),  # unmasked input: no placeholder, not "fully variable"
    ],
)
def test_is_fully_variable(token: str, expected: bool) -> None:
    assert is_fully_variable(token) is expected


def test_extra_mask_wins_over_builtins() -> None:
    m = Masker([ExtraMask("block", r"blk_-?\d+")])
    assert m.mask_token("blk_-1608999687919862906") == "<BLOCK>"
    assert m.mask_token("id=blk_42") == "id=<BLOCK>"
    assert "<BLOCK>" in m.placeholders
    assert is_fully_variable("<BLOCK>", m.placeholders)


def test_cache_bounded_and_consistent() -> None:
    m = Masker(cache_size=4)
    tokens = [str(i) for i in range(20)] + ["word", "10.0.0.1"]
    first = [m.mask_token(t) for t in tokens]
    assert len(m._cache) <= 4
    assert [m.mask_token(t) for t in tokens] == first


def test_cache_is_bounded_in_bytes_for_long_unique_tokens() -> None:
    """Long unique tokens fill the cache's byte budget long before its entry cap; it empties, and
    masking stays right."""
    import random

    m = Masker(cache_bytes=100_000)
    rnd = random.Random(3)
    for _ in range(200):
        tok = "sess=" + "".join(rnd.choice("abcdefghijklmnop") for _ in range(1000)) + "42"
        assert m.mask_token(tok) == tok[:-2] + "<N>"
        assert m._cache_bytes <= 100_000
    assert len(m._cache) < 60


@pytest.mark.parametrize("placeholder", ["<UUID>", "<MAC>", "<IP>", "<HEX>", "<N>"])
def test_placeholder_regex_matches_what_was_masked(masker: Masker, placeholder: str) -> None:
    """The regex each placeholder stands for in a type's regex accepts the original text."""
    samples = {
        "<UUID>": "123e4567-e89b-12d3-a456-426614174000",
        "<MAC>": "aa:bb:cc:dd:ee:ff",
        "<IP>": "fe80::1",
        "<HEX>": "0x7fff",
        "<N>": "-12",
    }
    token = samples[placeholder]
    assert masker.mask_token(token) == placeholder
    assert re.fullmatch(PLACEHOLDER_REGEX[placeholder], token)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_mask_text_total_and_idempotent_on_arbitrary_text(text: str) -> None:
    m = Masker()
    once = m.mask_text(text)
    assert isinstance(once, str)
    assert "  " not in once and once == once.strip()
    # masking masked text changes nothing: placeholders are not variables themselves
    assert m.mask_text(once) == once


def test_models_trained_now_mask_ssh_key_fingerprints(bundle_dir) -> None:
    """A new user's or a rotated key's fingerprint is random base64: unmasked, a learn-mode audit saw 86%
    of `Accepted publickey` lines alert through the autoencoder. Models trained now mask it; the mask is
    stored with the model, so one trained before keeps masking as it did."""
    from lograven.bundle import load_bundle
    from lograven.detector import Detector
    from lograven.parsing import Parser

    b = load_bundle(bundle_dir)
    assert "FINGERPRINT" in {m.name for m in b.types.extra_masks}
    d = Detector(b)
    line = "Jun  9 06:06:20 web01 sshd[5]: Accepted publickey for bob from 10.0.0.7 port 50000 ssh2: RSA SHA256:{}"
    keys = ["uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s", "Zz9+Qb1x/0wLkT3mNc7pR2sV8yH4jE6gA5uD1iK0oXq"]
    v1, v2 = (d.detect([("s", Parser("syslog").parse(line.format(k)))])[0] for k in keys)
    assert v1.ae_error == v2.ae_error and v1.type_id == v2.type_id


def test_without_host_takes_the_host_field_not_an_earlier_word() -> None:
    """The host is the last whole word of the header that equals it: not the day (`6`), and found next to
    punctuation in `regex:` formats (`[web1] app:`, `host=web1`)."""
    from lograven.masking import without_host

    assert without_host("Dec  6 10:00:00 6 cron[1]: x", "6", "x") == "Dec  6 10:00:00 <HOST> cron[1]: x"
    assert without_host("Dec  6 10:00:00 cron cron[1]: x", "cron", "x") == "Dec  6 10:00:00 <HOST> cron[1]: x"
    assert without_host("[web1] app: hi", "web1", "hi") == "[<HOST>] app: hi"
    assert without_host("t=1 host=web1 app: hi", "web1", "hi") == "t=1 host=<HOST> app: hi"
    assert without_host("Dec  6 10:00:00 web1 sshd[1]: web1 here", "web1", "web1 here") == \
        "Dec  6 10:00:00 <HOST> sshd[1]: web1 here"


def test_a_users_mask_of_the_same_name_replaces_a_trained_mask() -> None:
    from types import SimpleNamespace

    from lograven.training import training_masks

    assert [m.name for m in training_masks(None)] == ["FINGERPRINT"]
    mine = SimpleNamespace(extra_masks=[SimpleNamespace(name="fingerprint", pattern="fp:[0-9a-f]+")])
    assert [(m.name, m.pattern) for m in training_masks(mine)] == [("fingerprint", "fp:[0-9a-f]+")]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdefABCDEFxyz0123456789 .:-_/", max_size=300))
def test_a_long_lines_rest_collapses_hex_runs_that_hold_a_digit(text: str) -> None:
    """The rest of a long line (past 4,096 characters) is fingerprinted with every run of hex digits that
    holds a digit as one value. That was `[0-9A-Fa-f]*[0-9][0-9A-Fa-f]*`, which rescans a run without a
    digit from each of its characters: 16 s for one 64 KiB line of `abab…`, while the daemon's watchdog
    waits 30 s between batches (bench/long_lines.py measures it now: under 1 ms). Its replacement, one
    pass over each run, gives the same result."""
    from lograven.masking import _HEX_RUN, _numberish

    old = re.compile(r"[0-9A-Fa-f]*[0-9][0-9A-Fa-f]*")
    assert _HEX_RUN.sub(_numberish, text) == old.sub("0", text)


def test_a_long_lines_pattern_tells_its_rest_apart_by_more_than_numbers() -> None:
    from lograven.masking import line_pattern

    head = "Dec  6 10:00:00 web1 app[1]: " + "x" * 5000
    assert line_pattern(head + " dead0beef 42 cafe7") == line_pattern(head + " 1234 77 99")  # values: one pattern
    assert line_pattern(head + " deadbeef") != line_pattern(head + " 1234")  # a word without digits is a word


def test_a_mask_with_its_own_groups_names_every_match_right() -> None:
    """Hostile-input review (2026-12-07): `extra_masks: [{name: BLOCK, pattern: 'blk_(-?[0-9]+)'}]` passed `check`;
    its group shifted the alternation's numbering, so masks got the wrong names and the last built-in's index
    ran out of range: `train` and the daemon died with an IndexError at the first number."""
    m = Masker([ExtraMask("BLOCK", r"blk_(-?[0-9]+)"), ExtraMask("KV", r"(?P<key>\w+)=(\d+)")])
    assert m.mask_text("deleting blk_-42 and blk_7 size=3 after 12 s at 10.0.0.1") == \
        "deleting <BLOCK> and <BLOCK> <KV> after <N> s at <IP>"


def test_a_mask_that_cannot_join_the_others_is_a_config_error() -> None:
    """A global flag inside a group is an error since Python 3.11: `(?i)blk_\\d+` compiled alone (check passed),
    but not as one alternative of the masks, and the daemon died at start. Said at the key, with the fix."""
    from lograven.config import ConfigError, parse_config
    from lograven.errors import LogravenError
    from lograven.msgtypes import MessageTypes

    with pytest.raises(ConfigError, match=r"extra_masks\[0\]\.pattern.*\(\?i:\.\.\.\)"):
        parse_config({"training": {"msgtypes": {"extra_masks": [{"name": "blk", "pattern": r"(?i)blk_\d+"}]}}})
    with pytest.raises(ConfigError, match="lograven_mask_"):
        parse_config({"training": {"msgtypes": {"extra_masks": [{"name": "x", "pattern": r"(?P<lograven_mask_0>a+)"}]}}})
    data = MessageTypes().fit(["a b c"] * 3).to_json()
    data["params"]["extra_masks"] = [{"name": "blk", "pattern": r"(?i)blk_\d+"}]
    with pytest.raises(LogravenError, match="msgtypes.json: malformed message types"):
        MessageTypes.from_json(data)


def test_masks_that_number_their_groups_or_share_a_group_name_are_config_errors() -> None:
    """A code review (2026-12-07): `(\\w)\\1{3,}` got the (?i) advice; `x(a)(b)\\2` passed and silently masked
    `xaba` instead of `xabb` (its groups are numbered anew among the masks); two masks with a group `v` each
    passed `check` and crashed training. Each is an error at its key, with the fix."""
    from lograven.config import ConfigError, parse_config

    def masks(*patterns: str) -> dict:
        return {"training": {"msgtypes": {"extra_masks": [{"name": f"m{i}", "pattern": p} for i, p in enumerate(patterns)]}}}

    for p in (r"(\w)\1{3,}", r"x(a)(b)\2", r"(a)?(?(1)b|c)"):  # a numbered conditional too (a second review)
        with pytest.raises(ConfigError, match=r"extra_masks\[0\]\.pattern: the pattern refers to a group by number.*\(\?P=name\)"):
            parse_config(masks(p))
    with pytest.raises(ConfigError, match=r"extra_masks: the patterns cannot be used together \(redefinition of group name"):
        parse_config(masks(r"(?P<v>a+)", r"(?P<v>b+)"))
    # named references, an escaped backslash, octal escapes (\101 is A; in a class \1 is octal): fine
    cfg = parse_config(masks(r"x(?P<a>a)(?P<b>b)(?P=b)", r"lit\\1", r"\101\123", r"[\1-\3]x", r"(?P<n>q)?(?(n)r|s)"))
    m = Masker([ExtraMask(e.name, e.pattern) for e in cfg.training.msgtypes.extra_masks])
    assert m.mask_text("xabb xaba") == "<M0> xaba"
