"""Message types: learned templates with anchored regexes and an O(tokens) classifier.

The method is seed 003's (CountVectorizer -> TruncatedSVD -> Normalizer ->
KMeans, then a regex per cluster), made fine-grained and safe:

1. obvious variables are masked first (numbers, hex, IPs, UUIDs, MACs), so
   clustering sees the shape of a message, not its pids;
2. the number of clusters is chosen automatically from the inertia curve
   (the seed's elbow, read by a rule instead of by eye);
3. inside each cluster, messages are split by token count and then, position
   by position, a token that takes many values becomes a wildcard while one
   that takes few values splits the cluster (the seed's clusters are far
   coarser than real templates);
4. each type's regex is built from its token positions (`\\S+` for a
   wildcard, never `.+`), so regexes are anchored and cannot backtrack
   across tokens;
5. classification walks a token trie (constant tokens first, then shapes,
   then wildcards) instead of looping over hundreds of regexes;
6. a run of two or more tokens of one variable shape (`delete blk_1 blk_2
   blk_3`, a list of addresses) is one *repeated* token in a template, so a
   list of any length is the same message type, not a new type per length.
"""
from __future__ import annotations

import json
import logging
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lograven.errors import LogravenError
from lograven.masking import PLACEHOLDER_REGEX, ExtraMask, Masker, is_fully_variable

premask = Masker.premask

log = logging.getLogger(__name__)

UNKNOWN = 0  # type id of a message no learned type matches
FORMAT_VERSION = 1
FORMAT_WITH_RUNS = 2  # written when a type has a repeated token (older readers then say "retrain", not "malformed")

CONST, SHAPE, WILD = "c", "s", "w"
REP_SHAPE = "rs"  # one or more tokens of one masked shape (a list): `blk_<N> ...`, `<IP> ...`
_REPEATS = (REP_SHAPE,)
_REPEAT_MARK = "\x01"  # marks a collapsed run in a signature; never in a key (keys come from split tokens)


@dataclass
class MessageType:
    """One learned template."""

    id: int
    tokens: list[tuple[str, str]]  # (kind, value): CONST raw token, SHAPE masked key, WILD ""
    count: int = 0
    examples: list[str] = field(default_factory=list)
    beaten_by: list[str] = field(default_factory=list, repr=False)  # bodies of types preferred on overlap
    generation: int = 0  # 0: learned by `train`; n: added by the n-th `update` (older generations win)
    learned: bool = False  # lines of this type were given to `lograven learn` as normal (never a rare type)
    vouched: bool = False  # the operator named lines of this type as normal (an alert's line, a log given to learn)

    @property
    def catch_all(self) -> bool:
        """Mostly wildcards (2 or more, and at least 2/3 of the tokens): `<*> <*> <*> code=<*>`. Such a
        type matches almost any line of its length, so those lines are never an unknown type."""
        wild = sum(kind == WILD for kind, _ in self.tokens)
        return wild >= 2 and 3 * wild >= 2 * len(self.tokens)

    @property
    def template(self) -> str:
        out = []
        for kind, value in self.tokens:
            if kind == WILD:
                out.append("<*>")
            elif kind == SHAPE:
                out.append(_SHAPE_PLACEHOLDERS.sub("<*>", value))
            elif kind == REP_SHAPE:
                out.append(_SHAPE_PLACEHOLDERS.sub("<*>", value) + " ...")
            else:
                out.append(value)
        return " ".join(out)

    def body(self) -> str:
        """The positional pattern: `\\S+` for a wildcard, never `.+`, so nothing backtracks across tokens."""
        parts = []
        for kind, value in self.tokens:
            if kind == WILD:
                parts.append(r"\S+")
            elif kind == SHAPE:
                parts.append(_shape_regex(value))
            elif kind == REP_SHAPE:
                # two runs are never neighbours (_collapse_runs), so a run backtracks only against
                # single tokens: no polynomial blow-up on a line that does not match
                one = _shape_regex(value)
                parts.append(f"{one}(?:\\s+{one})*")
            else:
                parts.append(re.escape(value))
        return r"\s*" + r"\s+".join(parts) + r"\s*$"

    @property
    def repeats(self) -> bool:
        """True when a token of the template stands for a run of one or more tokens."""
        return any(k in _REPEATS for k, _ in self.tokens)

    @property
    def regex(self) -> str:
        """Anchored regex; excludes the more specific types that overlap it, so exactly one type matches."""
        if self.beaten_by:
            return "^(?!" + "|".join(f"(?:{b})" for b in self.beaten_by) + ")" + self.body()
        return "^" + self.body()


_SHAPE_PLACEHOLDERS = re.compile(r"<[A-Z][A-Z0-9_]*>")
_KEYED = re.compile(r"([A-Za-z]+)[^A-Za-z0-9<>]*<[A-Z][A-Z0-9_]*>")
_SHAPE_SPLIT = re.compile(r"(<[A-Z][A-Z0-9_]*>)")
_extra_regex: dict[str, str] = {}


def _placeholder_regex(name: str) -> str:
    """What a placeholder of a shape matches: what the masker replaces by it, and the placeholder
    itself. A message may contain `<N>` literally (`usage: seq <N>`); masking leaves it as it is, so
    the classifier takes it for the shape, and the type's regex must match it too."""
    pattern = PLACEHOLDER_REGEX.get(name) or _extra_regex.get(name)
    if pattern is None:
        return re.escape(name)  # not a mask's (`<FILE>` written in a message): only itself, as the classifier
    return f"(?:{re.escape(name)}|{pattern})"


class _Node:
    __slots__ = ("const", "shape", "wild", "type_id")

    def __init__(self) -> None:
        self.const: dict[str, _Node] = {}
        self.shape: dict[str, _Node] = {}
        self.wild: _Node | None = None
        self.type_id = UNKNOWN


@dataclass
class _Group:
    """Unique masked signatures of one length, with line counts and one raw example each."""

    sigs: list[tuple[str, ...]]
    counts: list[int]


class MessageTypes:
    """Learns message types from messages and classifies new ones (sklearn-style estimator)."""

    def __init__(
        self,
        *,
        svd_variance: float = 0.95,
        max_clusters: int = 2000,
        variable_min_distinct: int = 6,
        extra_masks: Sequence[ExtraMask] = (),
        seed: int = 42,
        max_cluster_points: int = 20000,
    ):
        self.svd_variance = svd_variance
        self.max_clusters = max_clusters
        self.variable_min_distinct = variable_min_distinct
        self.extra_masks = list(extra_masks)
        self.seed = seed
        self.max_cluster_points = max_cluster_points
        self._masker = Masker(self.extra_masks)
        for em in self.extra_masks:
            _extra_regex[f"<{em.name.upper()}>"] = em.pattern
        self.types_: list[MessageType] = []
        self.cluster_curve_: list[tuple[int, float]] = []
        self.n_clusters_: int = 0
        self._roots: dict[int, _Node] = {}
        self._reps: list[tuple[int, list[tuple[str, str]]]] = []
        self._named_sigs: set[tuple[str, ...]] = set()  # keys of lines an operator named as normal (update): see _refine

    # ------------------------------------------------------------------ keys
    def _keys(self, tokens: list[str]) -> tuple[str, ...]:
        mask = self._masker.mask_token
        masked = [mask(t) for t in tokens]
        keys = ["<*>" if k != t and is_fully_variable(k, self._masker.placeholders) else k for t, k in zip(tokens, masked)]
        return _collapse_runs(masked, keys)

    # ------------------------------------------------------------------- fit
    def fit(self, messages: Sequence[str], progress: Callable[[str, float], None] | None = None) -> MessageTypes:
        """Learn types from messages; every training message is then classified to a type."""
        if len(messages) == 0:
            raise LogravenError("no messages to learn message types from: give log files with content")
        sig_index: dict[tuple[str, ...], int] = {}
        sig_counts: list[int] = []
        for msg in messages:
            sig = self._keys(premask(msg).split())
            i = sig_index.get(sig)
            if i is None:
                sig_index[sig] = len(sig_counts)
                sig_counts.append(1)
            else:
                sig_counts[i] += 1
        sigs = list(sig_index)
        if progress:
            progress("clustering", 0.1)
        labels = self._cluster(sigs)
        if progress:
            progress("templates", 0.6)
        groups: dict[tuple[int, int], _Group] = {}
        for sig, count, label in zip(sigs, sig_counts, labels):
            g = groups.setdefault((int(label), len(sig)), _Group([], []))
            g.sigs.append(sig)
            g.counts.append(count)
        refined = _absorb_covered({key: self._refine(g.sigs, g.counts) for key, g in groups.items()})
        by_len: dict[int, dict[Spec, int]] = defaultdict(dict)
        for (_, length), specs_of in refined.items():
            into = by_len[length]
            for spec, cnt in _merge_siblings(specs_of, self.variable_min_distinct):
                into[spec] = into.get(spec, 0) + cnt
        # Siblings are siblings whichever cluster KMeans put them in: merged again across the clusters
        # of each length, so that three users (or `x+`/`y+`/`z+`) become one variable, or not, by the
        # rule and not by where a cluster boundary happened to fall for this seed (docs/accuracy.md).
        specs: dict[Spec, int] = {}
        for same_length in by_len.values():
            for spec, cnt in _merge_siblings(list(same_length.items()), self.variable_min_distinct):
                specs[spec] = specs.get(spec, 0) + cnt
        specs = _widen_sibling_shapes(_merge_into_runs(_merge_general(specs)), sigs)
        ordered = sorted(specs.items(), key=lambda kv: (-kv[1], kv[0]))
        self.types_ = [MessageType(i + 1, list(spec)) for i, (spec, _) in enumerate(ordered)]
        self._build_index()
        self._recount(messages)
        if progress:
            progress("done", 1.0)
        return self

    def _cluster(self, sigs: list[tuple[str, ...]]) -> np.ndarray:
        """Seed 003's pipeline over the unique masked signatures; k chosen from the inertia curve.

        Single-threaded: the SVD's and KMeans' floating-point sums, hence which signatures share a
        cluster, depend on how BLAS and OpenMP split the work, so the same lines gave other types with
        another number of threads (another machine, or a process that had called `limit_threads`)."""
        import sklearn.cluster  # noqa: F401  (load the thread pools, so that the limit reaches them)
        import sklearn.decomposition  # noqa: F401
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return self._cluster_one_thread(sigs)

    def _cluster_one_thread(self, sigs: list[tuple[str, ...]]) -> np.ndarray:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import TruncatedSVD
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import Normalizer

        n = len(sigs)
        if n <= 2:
            self.cluster_curve_ = [(1, 0.0)]
            self.n_clusters_ = 1
            return np.zeros(n, dtype=int)
        docs = [" ".join(s) for s in sigs]
        vec = CountVectorizer(lowercase=False, tokenizer=str.split, token_pattern=None, binary=True)
        X = vec.fit_transform(docs)
        n_feat = X.shape[1]
        if n_feat >= 3 and n >= 3:
            n_comp = max(1, min(256, n_feat - 1, n - 1))
            svd = TruncatedSVD(n_components=n_comp, random_state=self.seed, algorithm="randomized", n_iter=4)
            with np.errstate(invalid="ignore", divide="ignore"):  # bags of words that are all alike: no variance
                Z = svd.fit_transform(X)
            cum = np.cumsum(np.nan_to_num(svd.explained_variance_ratio_))
            keep = int(np.searchsorted(cum, self.svd_variance * cum[-1])) + 1
            Z = Z[:, :keep]
        else:
            Z = X.toarray().astype(float)
        Z = Normalizer(copy=False).fit_transform(Z)
        # Fit on at most max_cluster_points distinct signatures; predict the rest.
        rng = np.random.default_rng(self.seed)
        fit_idx = np.arange(n) if n <= self.max_cluster_points else rng.choice(n, self.max_cluster_points, replace=False)
        Zf = Z[fit_idx]
        n_fit = len(Zf)
        k_max = max(1, min(self.max_clusters, n_fit - 1))
        grid = sorted({int(round(x)) for x in np.geomspace(1, k_max, num=min(14, k_max))} | {1, k_max})
        curve: list[tuple[int, float]] = []
        models = {}
        for k in grid:
            km = KMeans(n_clusters=k, n_init=1, random_state=self.seed, max_iter=100)
            with warnings.catch_warnings():
                # more clusters than distinct points at the top of the grid: expected, and the knee
                # below is read from the inertia curve whatever KMeans found there
                warnings.simplefilter("ignore", ConvergenceWarning)
                km.fit(Zf)
            curve.append((k, float(km.inertia_)))
            models[k] = km
        self.cluster_curve_ = curve
        k = _choose_k(curve)
        self.n_clusters_ = k
        log.info("message types: %d distinct masked messages, %d clusters (the knee of KMeans' inertia over "
                 "k = %s)", n, k, ", ".join(str(c[0]) for c in curve))
        log.debug("KMeans inertia by k: %s", ", ".join(f"{c[0]}: {c[1]:.4g}" for c in curve))
        return models[k].predict(Z)

    def _refine(self, sigs: list[tuple[str, ...]], counts: list[int]) -> list[tuple[tuple[tuple[str, str], ...], int]]:
        """Split one same-length group into templates, position by position (iterative)."""
        out = []
        stack = [list(range(len(sigs)))]
        theta = self.variable_min_distinct
        while stack:
            idx = stack.pop()
            n_tok = len(sigs[idx[0]])
            spec: list[tuple[str, str]] = []
            split_pos, split_d = -1, 0
            for p in range(n_tok):
                values = Counter(sigs[i][p] for i in idx)
                d = len(values)
                if d > 1 and any(v[0] == _REPEAT_MARK for v in values):
                    # a run and a single token (or two runs of different shapes) never share a
                    # position: split here first, whatever else differs
                    spec.append((WILD, ""))
                    split_pos, split_d = p, 0
                    continue
                if d == 1:
                    (v,) = values
                    if v[0] == _REPEAT_MARK:
                        spec.append((REP_SHAPE, v[1:]))
                    elif v == "<*>":
                        spec.append((WILD, ""))
                    elif "<" in v and _SHAPE_PLACEHOLDERS.search(v):
                        spec.append((SHAPE, v))
                    else:
                        spec.append((CONST, v))
                elif d >= theta or (all(_SHAPE_PLACEHOLDERS.search(v) for v in values) and not _keyed(values)):
                    # many values, or only values that already carry variable parts (paths, host
                    # names, `<N>` / `<N>.<N>`); but a key and its value with different keys
                    # (`dcbf.........<N>` / `icbi.........<N>`) are alternatives, as constants are
                    spec.append((WILD, ""))
                else:
                    spec.append((WILD, ""))
                    if split_pos < 0 or d < split_d:
                        split_pos, split_d = p, d
            if split_pos < 0 and len(idx) > 1 and all(k == WILD for k, _ in spec):
                # Nothing constant would be left: `<*>` (or `<*> <*>`) matches every line of its length, so
                # a word never seen (`panic` among Android's one-word method names) would be a known type.
                # Such a group is split by value on its least varied position instead, however many values,
                # when those values look like a closed vocabulary (a program's few fixed words): at most one
                # line in twenty carries a value seen once (Good-Turing: the chance that the next line's
                # value is new, i.e. an unknown-type alert for a normal line), and there are a few dozen
                # values at most or a value comes on four lines or more on average. Otherwise the values
                # are open (ids, or names still being discovered), a type per value would alert on every
                # new one and make the model as large as the data, and the group stays one `<*>` type: the
                # autoencoder still scores its lines. With more training data an open-looking vocabulary
                # can close, and is then split. Lines an operator names as normal (`update`, `learn`) come
                # a few at a time, each value seen once or twice: for a group of only those, only the
                # number of values counts (not for the lines around an alert, nor periodic relearning).
                distinct = {p: len({sigs[i][p] for i in idx}) for p in range(n_tok)}
                pos = min((p for p in distinct if distinct[p] > 1), key=distinct.__getitem__, default=-1)
                lines_of: Counter[str] = Counter()
                for i in idx:
                    lines_of[sigs[i][pos]] += counts[i]
                n_lines = sum(lines_of.values())
                once = sum(1 for c in lines_of.values() if c == 1)
                few = len(lines_of) <= FEW_WORDS or 4 * len(lines_of) <= n_lines
                named = bool(self._named_sigs) and all(sigs[i] in self._named_sigs for i in idx)
                # With three tokens or more, no constant at all is a mix of messages (KMeans' k too small: a
                # host's messages and secure together gave `<*> <*> <*> <*>`) when its values are few (as above)
                # and its lines recur verbatim: at most half of them a line seen once. Free text and ids (many
                # values, lines mostly new, or every line twice) stay one type, as above.
                recurring = 2 * sum(counts[i] for i in idx if counts[i] == 1) <= n_lines
                if pos >= 0 and few and ((n_tok >= 3 and recurring) or named or 20 * once <= n_lines):
                    split_pos = pos
            if split_pos >= 0:
                parts: dict[str, list[int]] = defaultdict(list)
                for i in idx:
                    parts[sigs[i][split_pos]].append(i)
                stack.extend(parts.values())
                continue
            out.append((tuple(spec), sum(counts[i] for i in idx)))
        return out

    # ------------------------------------------------------------- classify
    def _build_index(self) -> None:
        """One token trie per generation: types added by `update` only get lines the older ones miss,
        so a known line never changes type when new types are learned."""
        gens: dict[int, dict[int, _Node]] = {}
        reps: dict[int, list[MessageType]] = defaultdict(list)
        for t in sorted(self.types_, key=lambda t: (t.generation, t.id)):
            roots = gens.setdefault(t.generation, {})
            if t.repeats:
                reps[t.generation].append(t)  # variable length: tried after the trie, most specific first
                continue
            node = roots.setdefault(len(t.tokens), _Node())
            for kind, value in t.tokens:
                if kind == CONST:
                    node = node.const.setdefault(value, _Node())
                elif kind == SHAPE:
                    node = node.shape.setdefault(value, _Node())
                else:
                    if node.wild is None:
                        node.wild = _Node()
                    node = node.wild
            if node.type_id == UNKNOWN:
                node.type_id = t.id
        self._generations = [(gens[g], [(t.id, t.tokens) for t in sorted(reps[g], key=_run_order)]) for g in sorted(gens)]
        self._generations = self._generations or [({}, [])]
        self._roots, self._reps = self._generations[0]
        self._by_id = {t.id: t for t in self.types_}
        _link_overlaps(self.types_)

    def classify_tokens(self, tokens: list[str]) -> int:
        """Type id of a tokenised message, or UNKNOWN (older generations of types first)."""
        t = self._classify_in(self._roots, tokens)
        if t == UNKNOWN and self._reps:
            t = self._classify_runs(self._reps, tokens)
        if t == UNKNOWN and len(self._generations) > 1:
            for roots, reps in self._generations[1:]:
                t = self._classify_in(roots, tokens)
                if t == UNKNOWN and reps:
                    t = self._classify_runs(reps, tokens)
                if t != UNKNOWN:
                    break
        return t

    def _classify_runs(self, reps: list[tuple[int, list[tuple[str, str]]]], tokens: list[str]) -> int:
        """The first template with repeated tokens that matches (only for lines the trie misses)."""
        n = len(tokens)
        masked: list[str] | None = None
        for type_id, spec in reps:
            if len(spec) <= n:
                if masked is None:
                    masked = self._masker.mask_tokens(tokens)
                if _match_runs(spec, tokens, masked):
                    return type_id
        return UNKNOWN

    def _classify_in(self, roots: dict[int, _Node], tokens: list[str]) -> int:
        """Walk one trie. Constant tokens win over shapes over wildcards."""
        root = roots.get(len(tokens))
        if root is None:
            return UNKNOWN
        n = len(tokens)
        mask = self._masker.mask_token
        # Depth-first with an explicit stack: (node, position, next alternative to try).
        stack: list[tuple[_Node, int, int]] = [(root, 0, 0)]
        steps = 0
        while stack:
            node, i, alt = stack.pop()
            if i == n:
                if node.type_id != UNKNOWN:
                    return node.type_id
                continue
            steps += 1
            if steps > 64 * n + 256:  # pathological overlap: give up rather than burn CPU
                return UNKNOWN
            tok = tokens[i]
            if alt == 0:
                stack.append((node, i, 1))
                child = node.const.get(tok)
                if child is not None:
                    stack.append((child, i + 1, 0))
                    continue
                alt = 1
                stack.pop()
            if alt == 1:
                stack.append((node, i, 2))
                if node.shape:
                    child = node.shape.get(mask(tok))
                    if child is not None:
                        stack.append((child, i + 1, 0))
                        continue
                stack.pop()
            if node.wild is not None:
                stack.append((node.wild, i + 1, 0))
        return UNKNOWN

    def classify(self, message: str) -> int:
        return self.classify_tokens(premask(message).split())

    def predict(self, messages: Iterable[str]) -> np.ndarray:
        c = self.classify_tokens
        return np.fromiter((c(premask(m).split()) for m in messages), dtype=np.int32)

    def get(self, type_id: int) -> MessageType | None:
        return self._by_id.get(type_id)

    @property
    def n_types(self) -> int:
        """Highest type id (ids are 1..n_types; 0 is UNKNOWN)."""
        return max((t.id for t in self.types_), default=0)

    def _recount(self, messages: Sequence[str]) -> None:
        """Counts and examples from what the index really does; drop types shadowed by more specific ones."""
        ids = self.predict(messages)
        counts = np.bincount(ids, minlength=self.n_types + 1)
        examples: dict[int, list[str]] = defaultdict(list)
        for m, t in zip(messages, ids):
            ex = examples[int(t)]
            if len(ex) < 3 and m not in ex:
                ex.append(m)
        for t in self.types_:
            t.count = int(counts[t.id])
            t.examples = examples.get(t.id, [])
        # Drop types shadowed by more specific ones; number the rest by frequency.
        live = sorted((t for t in self.types_ if t.count > 0), key=lambda t: (-t.count, t.id))
        for i, t in enumerate(live):
            t.id = i + 1
        self.types_ = live
        self._build_index()

    # ---------------------------------------------------------------- update
    def update(self, messages: Sequence[str], named: Iterable[str] = ()) -> list[int]:
        """Learn types for messages no existing type matches; existing ids never change. `named`: the
        messages an operator named as normal (`learn`'s log files, an alert's own line); a group of
        them without a constant is split by value on its number of values alone (see _refine).

        Returns the ids of the new types.
        """
        ids = self.predict(messages)
        unknown = [m for m, t in zip(messages, ids) if t == UNKNOWN]
        counts = Counter(int(t) for t in ids if t != UNKNOWN)
        for t in self.types_:
            t.count += counts.get(t.id, 0)
        if not unknown:
            return []
        sub = MessageTypes(**self._params())
        sub._named_sigs = {sub._keys(premask(m).split()) for m in named}
        sub.fit(unknown)
        base = self.n_types
        gen = max((t.generation for t in self.types_), default=0) + 1
        new_ids = []
        for t in sub.types_:
            t.id = base + t.id
            t.generation = gen
            new_ids.append(t.id)
            self.types_.append(t)
        self._build_index()
        return new_ids

    # ----------------------------------------------------------- persistence
    def _params(self) -> dict:
        """The constructor arguments this instance was made with."""
        return {
            "svd_variance": self.svd_variance,
            "max_clusters": self.max_clusters,
            "variable_min_distinct": self.variable_min_distinct,
            "extra_masks": list(self.extra_masks),
            "seed": self.seed,
            "max_cluster_points": self.max_cluster_points,
        }

    def to_json(self) -> dict:
        params = self._params()
        params["extra_masks"] = [{"name": m.name, "pattern": m.pattern} for m in self.extra_masks]
        return {
            "format": FORMAT_WITH_RUNS if any(t.repeats for t in self.types_) else FORMAT_VERSION,
            "params": params,
            "n_clusters": self.n_clusters_,
            "cluster_curve": [[k, v] for k, v in self.cluster_curve_],
            "types": [
                {
                    "id": t.id,
                    "template": t.template,
                    "regex": t.regex,
                    "count": t.count,
                    "examples": t.examples,
                    "tokens": [[k, v] for k, v in t.tokens],
                    "generation": t.generation,
                    **({"learned": True} if t.learned else {}),
                    **({"vouched": True} if t.vouched else {}),
                }
                for t in self.types_
            ],
        }

    @classmethod
    def from_json(cls, data: dict, source: str = "msgtypes.json") -> MessageTypes:
        try:
            if data.get("format") not in (FORMAT_VERSION, FORMAT_WITH_RUNS):
                raise LogravenError(
                    f"{source}: message-type format {data.get('format')!r} is not supported "
                    f"(this lograven reads formats {FORMAT_VERSION} and {FORMAT_WITH_RUNS}); retrain with `lograven train`"
                )
            p = data["params"]
            obj = cls(
                svd_variance=float(p["svd_variance"]),
                max_clusters=int(p["max_clusters"]),
                variable_min_distinct=int(p["variable_min_distinct"]),
                extra_masks=[ExtraMask(m["name"], m["pattern"]) for m in p.get("extra_masks", [])],
                seed=int(p["seed"]),
                max_cluster_points=int(p.get("max_cluster_points", 20000)),
            )
            obj.n_clusters_ = int(data.get("n_clusters", 0))
            obj.cluster_curve_ = [(int(k), float(v)) for k, v in data.get("cluster_curve", [])]
            for t in data["types"]:
                tokens = [(str(k), str(v)) for k, v in t["tokens"]]
                if any(k not in (CONST, SHAPE, WILD, *_REPEATS) for k, _ in tokens):
                    raise ValueError(f"bad token kind in type {t.get('id')}")
                if not 0 <= int(t["count"]) < 2**53:  # a line count (a review: 10**30 overflowed as a float)
                    raise ValueError(f"count {t['count']!r} of type {t.get('id')} is no line count")
                if not 1 <= int(t["id"]) < 2**31:  # a review: -1 loaded, and indexed the last type's weights
                    raise ValueError(f"type id {t['id']!r} is not 1 or more")
                obj.types_.append(
                    MessageType(int(t["id"]), tokens, int(t["count"]), [str(e) for e in t["examples"]][:3],
                                generation=int(t.get("generation", 0)), learned=bool(t.get("learned", False)),
                                vouched=bool(t.get("vouched", False)))
                )  # fmt: skip
        except LogravenError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, re.error) as e:  # re.error: a mask pattern
            raise LogravenError(f"{source}: malformed message types ({e!r}); retrain with `lograven train`") from e
        if len({t.id for t in obj.types_}) != len(obj.types_):
            raise LogravenError(f"{source}: duplicate type ids; retrain with `lograven train`")
        obj._build_index()
        return obj

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, ensure_ascii=False)


Spec = tuple[tuple[str, str], ...]
SIBLINGS_FOR_VARIABLE = 3
FEW_WORDS = 32  # values a group without a constant may take and still be split into a type per value
_PREF = {CONST: 0, SHAPE: 1, WILD: 2}  # the classifier's order of preference at a token


def _link_overlaps(types: list[MessageType]) -> None:
    """For each type, the types that can match a line it matches and win it.

    The trie prefers, at the first position where two same-length templates
    differ, a constant over a shape over a wildcard; a line both match goes to
    the preferred one. Templates with repeated tokens are tried after the trie
    of their generation, most specific first (_run_order), and older generations win over newer
    ones. Each type's regex then excludes its winners, so regexes and
    classifier agree and no line matches two regexes.
    """
    by_len: dict[int, list[MessageType]] = defaultdict(list)
    runs: list[MessageType] = []
    for t in types:
        t.beaten_by = []
        (runs if t.repeats else by_len[len(t.tokens)]).append(t)
    bodies = {id(t): t.body() for t in types}
    for group in by_len.values():
        if len(group) < 2:
            continue
        for a in group:
            for b in group:
                if a is b:
                    continue
                first = None
                ok = True
                for ta, tb in zip(a.tokens, b.tokens):
                    if ta == tb:
                        continue
                    if not _compatible(ta, tb):
                        ok = False
                        break
                    if first is None:
                        first = (ta[0], tb[0])
                if not ok:
                    continue
                if b.generation < a.generation or (
                    b.generation == a.generation and first is not None and _PREF[first[1]] < _PREF[first[0]]
                ):
                    a.beaten_by.append(bodies[id(b)])
    for r in runs:
        for t in types:
            if t is r or not _may_overlap(r.tokens, t.tokens):
                continue
            if t.repeats:
                if (t.generation, _run_order(t)) < (r.generation, _run_order(r)):
                    r.beaten_by.append(bodies[id(t)])
            elif t.generation <= r.generation:
                r.beaten_by.append(bodies[id(t)])  # the trie of a generation comes before its runs
            else:
                t.beaten_by.append(bodies[id(r)])


def _compatible(ta: tuple[str, str], tb: tuple[str, str]) -> bool:
    """Can one token match both template tokens (neither is a run)?"""
    (ka, va), (kb, vb) = ta, tb
    if ta == tb:
        return True
    if (ka == CONST and kb == CONST) or (ka == SHAPE and kb == SHAPE):
        return False  # different constants (or shapes) never match the same token
    if ka == CONST and kb == SHAPE:
        return re.fullmatch(_shape_regex(vb), va) is not None
    if kb == CONST and ka == SHAPE:
        return re.fullmatch(_shape_regex(va), vb) is not None
    return True


def _may_overlap(a: Spec | list[tuple[str, str]], b: Spec | list[tuple[str, str]]) -> bool:
    """Could one line match both templates, at least one of which has runs? (Conservative: True
    unless the tokens before the first run, or after the last, cannot match the same line.)"""
    a_runs, b_runs = any(k in _REPEATS for k, _ in a), any(k in _REPEATS for k, _ in b)
    if (not a_runs and len(a) < len(b)) or (not b_runs and len(b) < len(a)):
        return False  # a run takes at least one token: a fixed template shorter than the other never fits
    for ta, tb in zip(a, b):
        if ta[0] in _REPEATS or tb[0] in _REPEATS:
            break
        if not _compatible(ta, tb):
            return False
    for ta, tb in zip(reversed(a), reversed(b)):
        if ta[0] in _REPEATS or tb[0] in _REPEATS:
            break
        if not _compatible(ta, tb):
            return False
    return True


def _shape_regex(value: str) -> str:
    return "".join(
        _placeholder_regex(p) if _SHAPE_PLACEHOLDERS.fullmatch(p) else re.escape(p) for p in _SHAPE_SPLIT.split(value) if p
    )


def _keyed(values) -> bool:
    """Whether every value is a key and its value (`dcbf.........<N>`, `depth=<N>`: one word, optional
    punctuation, one placeholder at the end) and the keys differ."""
    keys = set()
    for v in values:
        m = _KEYED.fullmatch(v)
        if m is None:
            return False
        keys.add(m.group(1))
    return len(keys) > 1


def _absorb_covered(refined: dict[tuple[int, int], list[tuple[Spec, int]]]) -> dict[tuple[int, int], list[tuple[Spec, int]]]:
    """A template that a more general one (of any cluster) covers is that one, before siblings are counted.

    KMeans may put the `rhost=<IP> user=root` lines with the host names' `rhost=<*> user=root` or
    with `rhost=<IP> user=guest|test`; in the second cluster, root would make a third sibling and
    `user` a variable. Lines that an existing template already explains are not evidence that a
    constant varies, so where a cluster boundary falls no longer decides the types.
    """
    where: dict[Spec, tuple[int, int]] = {}
    counts: dict[Spec, int] = {}
    for key in sorted(refined):
        for spec, cnt in refined[key]:
            where.setdefault(spec, key)
            counts[spec] = counts.get(spec, 0) + cnt
    by_len: dict[int, list[Spec]] = defaultdict(list)
    for spec in sorted(counts, key=lambda g: (-counts[g], g)):
        by_len[len(spec)].append(spec)
    into: dict[Spec, Spec] = {}
    for group in by_len.values():
        general = [g for g in group if any(k == WILD for k, _ in g)]  # only a wildcard covers
        for t in group:
            for g in general:
                if g != t and g not in into and _joinable(g, t) == g:
                    into[t] = g
                    break

    def final(spec: Spec) -> Spec:
        while spec in into:
            spec = into[spec]
        return spec
    out: dict[tuple[int, int], dict[Spec, int]] = {key: {} for key in refined}
    for spec, cnt in counts.items():
        target = final(spec)
        bucket = out[where[target]]
        bucket[target] = bucket.get(target, 0) + cnt
    return {key: list(specs.items()) for key, specs in out.items() if specs}


def _merge_siblings(specs: list[tuple[Spec, int]], min_first: int = 6) -> list[tuple[Spec, int]]:
    """Templates of one cluster that differ in exactly one constant position are one template.

    (`session closed for user cyrus` / `... news` / `... test` -> `... user <*>`.)
    Splitting on a position is only kept when the siblings differ in more than one place.
    """
    changed = True
    items = dict(specs)
    while changed and len(items) > 1:
        changed = False
        for p in range(len(next(iter(items)))):
            buckets: dict[Spec, list[Spec]] = defaultdict(list)
            for spec in items:
                if spec[p][0] in (CONST, SHAPE):
                    buckets[spec[:p] + ((WILD, ""),) + spec[p + 1 :]].append(spec)
            for merged, members in buckets.items():
                # Two values are more often a meaningful alternative (Started/Stopped,
                # opened/closed, up/down) than a variable; three or more are a variable.
                # The first word is usually the event's verb or subject (Starting/Stopped, cupsd/sshd):
                # it takes as many values as the refinement's own variable rule to merge there.
                need = min_first if p == 0 else SIBLINGS_FOR_VARIABLE
                if len(members) < need and merged not in items:
                    continue
                if all(k == WILD for k, _ in merged):
                    continue  # never a template without a constant (see `_refine`)
                total = sum(items.pop(m) for m in members)
                items[merged] = items.get(merged, 0) + total
                changed = True
            if changed:
                break
    return list(items.items())


def _joinable(a: Spec, b: Spec) -> Spec | None:
    """The least general template covering both, when every position where they differ is a
    wildcard in one of them (and the result keeps at least half its tokens constant); else None.
    When one covers the other, that is the one returned."""
    out = []
    for ta, tb in zip(a, b):
        if ta == tb:
            out.append(ta)
        elif ta[0] in _REPEATS or tb[0] in _REPEATS:
            return None  # a run is never joined with a single token
        elif ta[0] == WILD or tb[0] == WILD:
            out.append((WILD, ""))
        else:
            return None
    if sum(k != WILD for k, _ in out) * 2 < len(out):
        return None
    return tuple(out)


def _merge_general(specs: dict[Spec, int]) -> dict[Spec, int]:
    """Templates of one length that differ only where one of them has a wildcard are one template.

    This drops a template that a more general one covers, and joins two forms of one variable
    (`rhost=<IP> user=<*>` in one cluster, a host name and always `user=root` in another) that
    would otherwise be two templates, a line mixing the forms (a host name and another user)
    matching neither: an unknown type for a known message. Only a result that keeps at least half
    its tokens constant is kept, so `<*> <*> <*>` never swallows a whole length class. Sibling
    merging (`_merge_siblings`) treats constant-vs-constant differences.
    """
    out = dict(specs)
    changed = True
    while changed:  # each join removes a template, so this ends
        changed = False
        by_len: dict[int, list[Spec]] = defaultdict(list)
        for spec in sorted(out, key=lambda g: (-out[g], g)):  # the most frequent absorbs first
            by_len[len(spec)].append(spec)
        for group in by_len.values():
            for a in group:
                if a not in out or all(k != WILD for k, _ in a):
                    continue  # two templates without wildcards never join
                for b in group:
                    j = _joinable(a, b) if b != a and b in out else None
                    if j is not None:
                        out[j] = out.pop(a) + out.pop(b) + out.pop(j, 0)
                        changed = True
                        break
    return out


def _widen_sibling_shapes(specs: dict[Spec, int], sigs: list[tuple[str, ...]]) -> dict[Spec, int]:
    """A template's shaped variable takes its sibling's wider form: `rhost=<IP> user=guest` becomes
    `rhost=<*> user=guest` when `rhost=<*> user=root` exists and some of its training lines have
    `rhost=<IP>` there (the two differ in one constant, and where one has the shape the other has a
    wildcard that the shape's lines fill too). The field is one variable, whichever forms the lines
    happened to show for each user, so a host name with `user=guest` is the known message, not an
    unknown type. A wildcard whose lines never show the shape (`data address: <hex>` beside
    `data address space....<N>`) widens nothing. A template is only widened when the wider form
    matches no training line it did not match already (each training line keeps its type, and two
    keys such as `port=<N>` / `uid=<N>` stay two types) and keeps at least half its tokens constant."""
    by_len: dict[int, list[tuple[str, ...]]] = defaultdict(list)
    for sig in sigs:
        by_len[len(sig)].append(sig)

    def fits(spec: Spec, sig: tuple[str, ...]) -> bool:
        return all(_sig_fits(kind, v, tok) for (kind, v), tok in zip(spec, sig))

    def shows(g: Spec, p: int, value: str) -> bool:
        return any(sig[p] == value and fits(g, sig) for sig in by_len[len(g)])

    general: dict[int, list[Spec]] = defaultdict(list)  # only a template with a wildcard can widen another
    for spec in specs:
        if any(k == WILD for k, _ in spec):
            general[len(spec)].append(spec)
    out: dict[Spec, int] = {}
    for t, cnt in specs.items():
        widened = list(t)
        for g in general[len(t)] if any(k == SHAPE for k, _ in t) else ():
            if g == t:
                continue
            consts, shapes = [], []
            for p, (ta, tb) in enumerate(zip(t, g)):
                if ta == tb:
                    continue
                if ta[0] == SHAPE and tb[0] == WILD:
                    shapes.append(p)
                elif ta[0] == CONST and tb[0] == CONST:
                    consts.append(p)
                else:
                    break
            else:
                if len(consts) == 1:
                    for p in shapes:
                        if shows(g, p, t[p][1]):
                            widened[p] = (WILD, "")
        w = tuple(widened)
        if w != t and (
            sum(k != WILD for k, _ in w) * 2 < len(w)
            or any(fits(w, sig) and not fits(t, sig) for sig in by_len[len(t)])
        ):
            w = t
        out[w] = out.get(w, 0) + cnt
    return out


def _sig_fits(kind: str, value: str, token: str) -> bool:
    """Whether one token of a masked signature fits one position of a template."""
    if kind == WILD:
        return not token.startswith(_REPEAT_MARK)
    if kind == REP_SHAPE:
        return token == _REPEAT_MARK + value
    return token == value


def _collapse_runs(masked: list[str], keys: list[str]) -> tuple[str, ...]:
    """A run of two or more tokens with one masked form that has a variable part (`blk_<N> blk_<N>
    blk_<N>`, `<IP> <IP>`) becomes one marked key, so a list of any length gives one signature.
    Runs of a constant word, and neighbours that merely both mask to variables (`<IP>: <N>:`), stay.
    The run keeps its masked form even where a single token would be `<*>`: it matches that shape
    only, never any token (a run of any tokens would swallow every unknown line)."""
    out: list[str] = []
    n = len(keys)
    i = 0
    while i < n:
        k = masked[i]
        j = i + 1
        while j < n and masked[j] == k:
            j += 1
        # two runs side by side (`<N> <N> <HEX> <HEX>`) would make the regexes backtrack polynomially:
        # only the first becomes a run
        if j - i >= 2 and "<" in k and _SHAPE_PLACEHOLDERS.search(k) and not (out and out[-1][0] == _REPEAT_MARK):
            out.append(_REPEAT_MARK + k)  # the masked form, also for `<IP>`: a run matches that shape only
        else:
            out.extend(keys[i:j])
        i = j
    return tuple(out)


def _merge_into_runs(specs: dict[Spec, int]) -> dict[Spec, int]:
    """A template with a single token where another, otherwise equal, has a run of that token's
    shape is that template (`delete blk_<*>` joins `delete blk_<*> ...`): a list of one is a list."""
    out = dict(specs)
    for spec in sorted(specs, key=lambda g: (-specs[g], g)):
        if spec not in out:
            continue
        for p, (kind, value) in enumerate(spec):
            if kind not in _REPEATS:
                continue
            single = spec[:p] + ((SHAPE, value),) + spec[p + 1 :]
            if single in out and single != spec:
                out[spec] = out.get(spec, 0) + out.pop(single)
    return out


def _token_fits(kind: str, value: str, token: str, masked: str) -> bool:
    if kind == CONST:
        return token == value
    if kind in (SHAPE, REP_SHAPE):
        return masked == value
    return True  # WILD


def _run_order(t: MessageType) -> tuple:
    """The order in which one generation's templates with runs are tried: the most constant tokens,
    then the most non-wildcard tokens, then the tokens themselves. It does not depend on ids, which
    are renumbered by line counts after the counts are taken."""
    return (-sum(k == CONST for k, _ in t.tokens), -sum(k != WILD for k, _ in t.tokens), t.tokens)


def _match_runs(spec: Sequence[tuple[str, str]], tokens: list[str], masked: list[str]) -> bool:
    """Does a template with repeated tokens match a tokenised message (each run takes one or more tokens)?

    Dynamic programming over (template position, token position): O(len(spec) * len(tokens)).
    """
    m, n = len(spec), len(tokens)
    # ok[j]: the template's first i positions can consume exactly tokens[:j]
    ok = [False] * (n + 1)
    ok[0] = True
    for kind, value in spec:
        new = [False] * (n + 1)
        run = kind in _REPEATS
        for j in range(1, n + 1):
            if (ok[j - 1] or (run and new[j - 1])) and _token_fits(kind, value, tokens[j - 1], masked[j - 1]):
                new[j] = True
        ok = new
        if not any(ok):
            return False
    return ok[n] and m <= n


def _choose_k(curve: list[tuple[int, float]]) -> int:
    """Knee of the inertia curve: the k farthest below the chord in (log k, inertia) space.

    The refinement step splits clusters that are too coarse and merges
    identical templates from clusters that are too fine, so k only has to be
    in the right region; the knee is a robust, scale-free choice.
    """
    if len(curve) <= 2:
        return curve[-1][0]
    ks = np.log(np.array([k for k, _ in curve], dtype=float))
    inert = np.array([v for _, v in curve])
    if inert[0] <= 0:
        return curve[0][0]
    x = (ks - ks[0]) / max(ks[-1] - ks[0], 1e-12)
    y = (inert - inert[-1]) / max(inert[0] - inert[-1], 1e-12)
    # distance below the chord from (0,1) to (1,0)
    dist = (1 - x) - y
    return curve[int(np.argmax(dist))][0]
