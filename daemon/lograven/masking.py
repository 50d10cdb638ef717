"""Masking of obvious variables (numbers, hex, IPs, UUIDs, MACs) inside log tokens.

Both the message-type learner and the autoencoder see masked text: a pid or a
port number says nothing about which *kind* of message a line is, and its
digits are noise a model cannot predict.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Placeholders are written with angle brackets so they cannot collide with
# ordinary words; `<*>` is reserved for template wildcards.
PLACEHOLDERS = ("<UUID>", "<MAC>", "<IP>", "<HEX>", "<N>")

# Timestamps inside messages span several tokens ("Sat Jul  9 22:53:19 2005");
# they are collapsed into one `<DATE>` token before splitting.
_MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DATE_REGEX = (
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s+)?" + _MON + r"\s+\d{1,2},?\s+\d{1,2}:\d{2}:\d{2}(?:\.\d+)?(?:\s+\d{4}\b)?"
    r"|\b\d{4}-\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_DATE = re.compile(_DATE_REGEX)
_TIME_HINT = re.compile(r"\d:\d\d:\d\d")  # every date form above has a time; cheap to look for first

_BUILTIN: list[tuple[str, str]] = [
    ("<UUID>", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    ("<MAC>", r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}:){5,}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])"),
    ("<IP>", r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\d.])"),
    # IPv6, also compressed (`fe80::1`); at least two hex digits somewhere so `::` alone stays;
    # never a MAC (which the masker tries first anyway): a template's `<IP>` must not match one
    ("<IP>", r"(?<![0-9A-Za-z:])(?!(?:[0-9A-Fa-f]{2}:){5,}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:]))"
             r"(?=[0-9A-Fa-f:]*[0-9A-Fa-f]{2})(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{1,4}(?![0-9A-Za-z:])"),
    ("<HEX>", r"\b0[xX][0-9a-fA-F]+\b"),
    # long hex ids (hashes, addresses) with at least one digit and one letter;
    # all-digit runs stay numbers
    ("<HEX>", r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"),
    # a sign belongs to the number unless it joins two alphanumerics (`x-86`)
    ("<N>", r"(?:(?<![A-Za-z0-9])-)?\d+"),
]

_ALNUM = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class ExtraMask:
    """A user-defined mask: every match of `pattern` becomes `<name>`."""

    name: str
    pattern: str


_GROUP = "lograven_mask_"  # names of the alternation's groups (a user pattern may not use them)


def mask_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be one alternative of the masks' alternation, or None: it must compile as a
    group (`(?i)` inside one is an error since Python 3.11: put `(?i:...)` around the part instead) and
    not use the alternation's own group names."""
    if _GROUP in pattern:
        return f"the pattern uses the group name prefix {_GROUP}, which lograven's masks use; rename the group"
    if _refers_by_number(pattern):
        # among the masks the groups are numbered anew: \2 would name another group (or an open one)
        return ("the pattern refers to a group by number (\\1, (?(1)...)), which changes among the masks: name the "
                "group, (?P<name>...), and refer to it as (?P=name) or (?(name)...)")
    try:
        re.compile(f"(?P<{_GROUP}x>{pattern})|x")
    except re.error as e:
        hint = ("; a global flag such as (?i) must become a scoped one: (?i:...)" if "global flags" in str(e) else "")
        return f"the pattern cannot be combined with the other masks ({e}){hint}"
    return None


def _group_refs(pattern: str) -> list[int] | None:
    """The group numbers `pattern` refers to (backreferences and conditionals), in order; None if it does
    not parse (the compile check says why)."""
    try:
        from re import _constants as c, _parser as parser  # the stdlib's own parser: no guessing at escapes
    except ImportError:  # pragma: no cover - not CPython 3.11+
        return []
    try:
        tree = parser.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    out: list[int] = []

    def walk(items: object) -> None:
        for item in items:  # (op, av) pairs; av may hold sub-patterns, nested anywhere in tuples and lists
            if not (isinstance(item, tuple) and len(item) == 2):
                continue
            op, av = item
            if op is c.GROUPREF:
                out.append(av)
            elif op is c.GROUPREF_EXISTS:
                out.append(av[0])
            stack = [av]
            while stack:
                x = stack.pop()
                if isinstance(x, parser.SubPattern):
                    walk(x.data)
                elif isinstance(x, (tuple, list)):
                    stack.extend(x)

    walk(tree.data)
    return out


def _refers_by_number(pattern: str) -> bool:
    """Whether a reference in `pattern` is by number: wrapped in one more group, a reference by name follows
    its group to the next number, one by number (\1, (?(1)...)) stays."""
    alone, wrapped = _group_refs(pattern), _group_refs(f"(?:()){pattern}")
    if not alone or wrapped is None:
        return False
    return wrapped != [n + 1 for n in alone]


class Masker:
    """Replaces variable substrings with placeholders; caches per token."""

    CACHE_BYTES = 8 * 2**20  # about: keys and values of the token cache, with dict overhead

    def __init__(self, extra: Iterable[ExtraMask] = (), cache_size: int = 200_000, cache_bytes: int = CACHE_BYTES):
        parts = []
        self._names: list[str] = []
        for em in extra:
            self._names.append(f"<{em.name.upper()}>")
            parts.append(em.pattern)
        for name, pattern in _BUILTIN:
            self._names.append(name)
            parts.append(pattern)
        # One alternation, one pass: earlier alternatives win, so user masks and
        # the more specific built-ins (UUID before HEX before N) take precedence.
        # Each alternative is a named group, and a match is named by `lastgroup`: a user pattern's own groups
        # (`blk_(-?\d+)`) shifted the numbering, so masks got the wrong name and the last crashed the daemon.
        self._regex = re.compile("|".join(f"(?P<{_GROUP}{i}>{p})" for i, p in enumerate(parts)))
        self._by_group = {f"{_GROUP}{i}": name for i, name in enumerate(self._names)}
        self.placeholders = tuple(dict.fromkeys(self._names))
        # bounded by entries and by bytes: unique long tokens (session ids, tokens in URLs) must not
        # fill hundreds of MB before the entry cap empties it
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size
        self._cache_bytes_max = cache_bytes
        self._cache_bytes = 0

    def _sub(self, m: re.Match[str]) -> str:
        return self._by_group[m.lastgroup]  # type: ignore[index]

    @staticmethod
    def premask(text: str) -> str:
        """Collapse multi-token timestamps into one `<DATE>` token."""
        if ":" not in text or _TIME_HINT.search(text) is None:
            return text
        return _DATE.sub("<DATE>", text)

    def mask_token(self, token: str) -> str:
        """Masked form of one whitespace-free token (cached)."""
        hit = self._cache.get(token)
        if hit is not None:
            return hit
        masked = self._regex.sub(self._sub, token)
        cost = 200 + len(token) + len(masked)
        if len(self._cache) >= self._cache_size or self._cache_bytes + cost > self._cache_bytes_max:
            self._cache.clear()
            self._cache_bytes = 0
        self._cache[token] = masked
        self._cache_bytes += cost
        return masked

    def mask_tokens(self, tokens: list[str]) -> list[str]:
        mask = self.mask_token
        return [mask(t) for t in tokens]

    def mask_text(self, text: str) -> str:
        """Masked form of a whole message, whitespace normalised to single spaces."""
        return " ".join(self.mask_tokens(self.premask(text).split()))


_LINE_MASKER: Masker | None = None
LINE_PATTERN_CHARS = 512  # of a line, for its pattern (allowlist rules, de-duplication)


REST_MASKED_CHARS = 4096  # of a long line, masked for its fingerprint (the rest: digits and hex collapsed)
REST = " <REST:"  # a long line's pattern: its first 512 characters masked, then this fingerprint of the rest
# a run of hex digits, collapsed when it holds a digit. (`[0-9A-Fa-f]*[0-9][0-9A-Fa-f]*` did the same,
# but rescanned a digitless run from each of its characters: 16 s for a 64 KiB line of `abab…`.)
_HEX_RUN = re.compile(r"[0-9A-Fa-f]+")
_DIGIT = re.compile(r"[0-9]")


def _numberish(m: re.Match) -> str:
    run = m.group()
    return "0" if _DIGIT.search(run) else run


def line_pattern(line: str, masker: Masker | None = None) -> str:
    """A line as the message types mask it (numbers, hex values, addresses, ids and dates replaced,
    whitespace normalised): the identity of an unknown message for allowlisting and de-duplication.
    `0x7f3a…` and `0x5521…` give the same pattern. `masker` is the model's (with its `extra_masks`);
    without one, the built-in masks only.

    Its first 512 characters are masked; of a longer line, the rest is fingerprinted: masked as well up
    to the 4,096th character, and beyond that with every run of digits and hex digits as one value
    (cheap: an attacker's 64 KiB lines must not cost a full masking each). Cut at 512 alone, a payload
    after the 512th character rode on an allowlist rule, or a de-duplicated alert, made for the same
    start."""
    global _LINE_MASKER
    if masker is None:
        if _LINE_MASKER is None:
            _LINE_MASKER = Masker(cache_size=20_000)
        masker = _LINE_MASKER
    head = masker.mask_text(line[:LINE_PATTERN_CHARS])
    rest = line[LINE_PATTERN_CHARS:]
    if not rest.strip():
        return head
    near, far = rest[: REST_MASKED_CHARS - LINE_PATTERN_CHARS], rest[REST_MASKED_CHARS - LINE_PATTERN_CHARS :]
    text = masker.mask_text(near) + " " + " ".join(_HEX_RUN.sub(_numberish, far).split())
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8)
    return f"{head}{REST}{digest.hexdigest()}>"


HOST = "<HOST>"


def without_host(line: str, host: str | None, message: str) -> str:
    """`line` with its header's host name replaced by <HOST>: one unknown message from many hosts (a
    central log host), or from a renamed host, is one pattern to allowlist and de-duplicate. The host
    is looked for in the header only (before `message`), so a message that names it keeps it."""
    if not host:
        return line
    head = len(line) - len(message) if message and line.endswith(message) else len(line)
    # As a whole word, the last in the header (the host field comes after the time stamp): host `10`,
    # `6` or `a` must not be taken out of `Dec  6 10:00:00` or `Mar`. Between spaces first; then between
    # other punctuation (`[web1] app:`, `host=web1` in a `regex:` format).
    h = re.escape(host)
    for rx in (r"(?<!\S)" + h + r"(?!\S)", r"(?<![\w.-])" + h + r"(?![\w.-])"):
        found = list(re.finditer(rx, line[:head]))
        if found:
            m = found[-1]
            return line[: m.start()] + HOST + line[m.end():]
    return line


def is_fully_variable(masked_token: str, placeholders: tuple[str, ...] = PLACEHOLDERS) -> bool:
    """True when nothing but placeholders and punctuation is left (e.g. `<IP>`, `(<N>)`)."""
    if masked_token == "" or "<" not in masked_token:
        return False
    rest = masked_token
    for p in placeholders:
        rest = rest.replace(p, "")
    return _ALNUM.search(rest) is None


def _alternatives(name: str) -> str:
    """The masker's own patterns for one placeholder, as one group, with their lookarounds: a
    template's shape then matches a token exactly when masking the token gives the shape."""
    pats = [p for n, p in _BUILTIN if n == name]
    return "(?:" + "|".join(pats) + ")"


# A shape's regex uses the masker's patterns, so a template's regex matches what the classifier
# (which masks) matches: `1` is `<N>`, never `<HEX>`; `5` is never `<IP>`.
PLACEHOLDER_REGEX = {
    "<DATE>": "(?:" + _DATE_REGEX + ")",
    "<UUID>": _alternatives("<UUID>"),
    "<MAC>": _alternatives("<MAC>"),
    "<IP>": _alternatives("<IP>"),
    "<HEX>": _alternatives("<HEX>"),
    "<N>": _alternatives("<N>"),  # `x-86` masks to `x-<N>`: the sign is not the number's
}
