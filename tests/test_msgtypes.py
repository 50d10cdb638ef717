"""Message types: coverage of the training data, exclusive regexes, grouping accuracy, unseen
messages, persistence, incremental update, robustness of the classifier."""
from __future__ import annotations

import json
import random
import re
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lograven.errors import LogravenError
from lograven.msgtypes import CONST, UNKNOWN, WILD, MessageTypes


def copy_types(mt: MessageTypes) -> MessageTypes:
    """An independent copy (the session fixture must stay untouched)."""
    return MessageTypes.from_json(json.loads(mt.dumps()))


def grouping_accuracy(predicted: list, truth: list) -> float:
    """Loghub's GA: a line is correct when its predicted group is exactly its true group."""
    pred_groups: dict = defaultdict(set)
    true_groups: dict = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth)):
        pred_groups[p].add(i)
        true_groups[t].add(i)
    ok = sum(1 for p, t in zip(predicted, truth) if pred_groups[p] == true_groups[t])
    return ok / len(truth)


def test_grouping_accuracy_helper() -> None:
    assert grouping_accuracy([1, 1, 2, 3], ["a", "a", "b", "b"]) == 0.5
    assert grouping_accuracy([5, 5, 7], ["x", "x", "y"]) == 1.0
    assert grouping_accuracy([1, 1, 1], ["x", "y", "y"]) == 0.0


# ---------------------------------------------------------------- training data


def test_every_training_message_has_a_type_whose_regex_matches(fitted_types, normal_data) -> None:
    ids = fitted_types.predict(normal_data.messages)
    assert (ids != UNKNOWN).all(), [m for m, t in zip(normal_data.messages, ids) if t == UNKNOWN][:5]
    regexes = {t.id: re.compile(t.regex) for t in fitted_types.types_}
    bad = [(m, int(t)) for m, t in zip(normal_data.messages, ids) if not regexes[int(t)].match(m)]
    assert not bad, bad[:5]
    # ids are 1..n_types, counts add up to the training lines
    assert sorted(t.id for t in fitted_types.types_) == list(range(1, fitted_types.n_types + 1))
    assert sum(t.count for t in fitted_types.types_) == len(normal_data.messages)


def test_no_training_message_matches_two_regexes(fitted_types, normal_data) -> None:
    regexes = [(t.id, re.compile(t.regex)) for t in fitted_types.types_]
    distinct = list(dict.fromkeys(normal_data.messages))
    ids = fitted_types.predict(distinct)
    wrong = []
    for m, t in zip(distinct, ids):
        hits = [i for i, r in regexes if r.match(m)]
        if hits != [int(t)]:
            wrong.append((m, int(t), hits))
    assert not wrong, wrong[:5]


def test_classify_and_predict_agree(fitted_types, normal_data) -> None:
    msgs = normal_data.messages[:500]
    ids = fitted_types.predict(msgs)
    assert ids.dtype == np.int32
    assert [fitted_types.classify(m) for m in msgs] == ids.tolist()


def test_types_are_fine_grained_on_generator_data(fitted_types, normal_data) -> None:
    """Regression guard well below the target: far more types than the seed's 2-8 clusters."""
    ga = grouping_accuracy(fitted_types.predict(normal_data.messages).tolist(), normal_data.templates)
    assert ga >= 0.7  # measured 0.737 (seed 1, 5000 lines); the target is below
    assert len(fitted_types.types_) >= 40


@pytest.mark.xfail(
    strict=True,
    reason=(
        "measured GA 0.737 on LogGenerator(seed=1) 5000 lines (target 0.9). Cause: "
        "position-wise templates split multi-token fields "
        "(systemd unit descriptions, sudo/cron commands, the optional 'DF ' in UFW lines) and "
        "_refine splits on low-cardinality positions (sudo lines per user)"
    ),
)
def test_grouping_accuracy_against_generator_templates(fitted_types, normal_data) -> None:
    ga = grouping_accuracy(fitted_types.predict(normal_data.messages).tolist(), normal_data.templates)
    assert ga >= 0.9, f"grouping accuracy {ga:.3f}"


def test_opposite_events_are_different_types(fitted_types) -> None:
    started = fitted_types.classify("Started User Manager for UID 1000.")
    stopped = fitted_types.classify("Stopped User Manager for UID 1000.")
    assert UNKNOWN not in (started, stopped)
    assert started != stopped


# ---------------------------------------------------------------- unseen messages


def test_unseen_messages_are_unknown(fitted_types, unseen_data) -> None:
    assert len(set(unseen_data.templates)) >= 10  # the generator's unseen kinds are all represented
    ids = fitted_types.predict(unseen_data.messages)
    known = [(m, fitted_types.get(int(t)).template) for m, t in zip(unseen_data.messages, ids) if t != UNKNOWN]
    assert not known, known[:5]


@pytest.mark.parametrize(
    "message",
    [
        "/dev/sda1 out of diskspace",
        "failed logon attempt by margie.",
        "unknown operand from system process",
        "",
        "   ",
    ],
)
def test_seed_000_test_lines_are_unknown(fitted_types, message: str) -> None:
    assert fitted_types.classify(message) == UNKNOWN


# ---------------------------------------------------------------- persistence


def test_json_roundtrip_predicts_identically(fitted_types, normal_data, unseen_data) -> None:
    data = json.loads(fitted_types.dumps())  # through real JSON text, not just dicts
    loaded = MessageTypes.from_json(data)
    msgs = normal_data.messages + unseen_data.messages
    assert loaded.predict(msgs).tolist() == fitted_types.predict(msgs).tolist()
    assert [(t.id, t.template, t.regex, t.count) for t in loaded.types_] == [
        (t.id, t.template, t.regex, t.count) for t in fitted_types.types_
    ]
    assert loaded.to_json() == fitted_types.to_json()


def test_from_json_rejects_other_format(fitted_types) -> None:
    data = fitted_types.to_json()
    data["format"] = 99
    with pytest.raises(LogravenError, match="msgtypes.json.*format 99"):
        MessageTypes.from_json(data)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("types"),
        lambda d: d["types"][0].pop("tokens"),
        lambda d: d["types"][0].__setitem__("tokens", [["x", "y"]]),
        lambda d: d["types"][0].__setitem__("id", "not a number"),
        lambda d: d["types"][1].__setitem__("id", d["types"][0]["id"]),
        lambda d: d["types"][0].__setitem__("count", 10**30),  # overflowed the detector's counts (a review)
        lambda d: d["types"][0].__setitem__("count", -3),
    ],
    ids=["no-types", "no-tokens", "bad-kind", "bad-id", "duplicate-id", "huge-count", "negative-count"],
)
def test_from_json_malformed_raises_project_error(fitted_types, damage) -> None:
    data = json.loads(fitted_types.dumps())
    damage(data)
    with pytest.raises(LogravenError, match="msgtypes.json"):
        MessageTypes.from_json(data)


def test_fit_without_messages_raises() -> None:
    with pytest.raises(LogravenError):
        MessageTypes().fit([])


# ---------------------------------------------------------------- update


def test_update_keeps_existing_types_and_adds_new_ones(fitted_types, normal_data, unseen_data) -> None:
    mt = copy_types(fitted_types)
    before = [(t.id, t.template) for t in mt.types_]
    old_max = mt.n_types
    old_ids = mt.predict(normal_data.messages)
    new_msgs = unseen_data.messages[:300]
    new_ids = mt.update(new_msgs)
    assert new_ids, "unseen messages must produce new types"
    assert min(new_ids) > old_max
    assert len(set(new_ids)) == len(new_ids)
    # existing ids and templates are untouched
    assert [(t.id, t.template) for t in mt.types_[: len(before)]] == before
    # the new messages now classify, to new types only
    got = mt.predict(new_msgs)
    assert (got != UNKNOWN).all()
    assert set(got.tolist()) <= set(new_ids)
    # previously classified training messages keep their ids
    assert mt.predict(normal_data.messages).tolist() == old_ids.tolist()
    # a second update with the same messages learns nothing new
    assert mt.update(new_msgs) == []


def test_update_with_known_messages_only_counts() -> None:
    msgs = [f"job {i} finished" for i in range(10)] + ["disk ok"] * 3
    mt = MessageTypes().fit(msgs)
    counts = {t.id: t.count for t in mt.types_}
    assert mt.update(msgs) == []
    assert {t.id: t.count for t in mt.types_} == {k: 2 * v for k, v in counts.items()}


def test_update_does_not_steal_known_messages() -> None:
    known = [f"foo {w} bar" for w in "a b c d e f g h x".split()] + ["alpha beta gamma"] * 3
    mt = MessageTypes().fit(known)
    before = mt.predict(known).tolist()
    regex_before = {t.id: t.regex for t in mt.types_}
    new = [f"foo x {w}" for w in "k l m n o p q r".split()]
    assert (mt.predict(new) == UNKNOWN).all()
    assert mt.update(new)
    assert mt.predict(known).tolist() == before
    assert {t.id: t.regex for t in mt.types_ if t.id in regex_before} == regex_before


# ---------------------------------------------------------------- robustness


@pytest.fixture(scope="module")
def training_vocab(normal_data) -> list[str]:
    words = sorted({w for m in normal_data.messages[:2000] for w in m.split()})
    return words


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_classify_arbitrary_text_never_raises(fitted_types, text: str) -> None:
    t = fitted_types.classify(text)
    assert type(t) is int
    assert t == UNKNOWN or fitted_types.get(t) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(st.text(min_size=1, max_size=12), max_size=30))
def test_classify_tokens_arbitrary_lists_never_raises(fitted_types, tokens: list[str]) -> None:
    t = fitted_types.classify_tokens(tokens)
    assert type(t) is int
    assert 0 <= t <= fitted_types.n_types


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_classified_message_matches_its_regex(fitted_types, normal_data, training_vocab, data) -> None:
    """Soundness on near-miss lines: a type the classifier picks always has a regex matching the line."""
    base = data.draw(st.sampled_from(normal_data.messages)).split()
    # mutate a few positions with training words or numbers, keep the length (the hard case)
    for _ in range(data.draw(st.integers(0, 3))):
        if base:
            i = data.draw(st.integers(0, len(base) - 1))
            base[i] = data.draw(st.one_of(st.sampled_from(training_vocab), st.integers(-9999, 99999).map(str)))
    message = " ".join(base)
    t = fitted_types.classify(message)
    if t != UNKNOWN:
        assert re.match(fitted_types.get(t).regex, message), (message, fitted_types.get(t).template)


def _fit_and_check_every_message_typed_exactly_once(messages: list[str]) -> MessageTypes:
    """Fit; every training message has a type, and exactly one regex, its type's, matches it."""
    mt = MessageTypes(seed=0).fit(messages)
    regexes = {t.id: re.compile(t.regex) for t in mt.types_}
    for m in messages:
        t = mt.classify(m)
        assert t != UNKNOWN, (m, [x.template for x in mt.types_])
        assert [i for i, r in regexes.items() if r.match(m)] == [t], (m, [(x.id, x.template) for x in mt.types_])
    return mt


_TOKENS = ["a", "b", "c", "d", "e", "1", "22", "x=3", "0xff", "10.0.0.1", "port=-5", "fe80::1", "x-86",
           "aa:bb:cc:dd:ee:ff", "<foo>", "<*>", "<N>", "x<IP>", "<FOO>", "a1", "a-1", "ab2", "dcbf...3", "icbi...-4"]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=5).map(" ".join), min_size=1, max_size=40))
# found by this test in CI: a run of `<IP>` took the MAC, whose IPv6-like form the IPv6 regex matched
@example(["a 10.0.0.1 10.0.0.1 a", "a 10.0.0.1 10.0.0.1 aa:bb:cc:dd:ee:ff a"])
def test_fit_property_every_message_typed_exactly_once(messages: list[str]) -> None:
    _fit_and_check_every_message_typed_exactly_once(messages)


@pytest.mark.parametrize(
    "messages",
    [
        ["usage: seq <N>"] * 3,
        ["usage: seq <N>", "usage: seq 5", "usage: seq 12"],
        ["from <IP> port <N>", "from 10.0.0.1 port 22"],
        ["id=<HEX> x<N>y", "id=0xff x7y"],
        ["at <DATE> done", "at Sat Jul  9 22:53:19 2005 done"],
        ["usage: cmd <FILE>"] * 3,  # not a mask's placeholder: it matches only itself (it matched any token)
    ],
)
def test_literal_placeholder_in_message_matches_own_regex(messages: list[str]) -> None:
    """Masking leaves a literal `<N>` as it is, so the classifier takes it for the shape; the type's
    regex says the same (it did not: `usage: seq <N>`'s own regex rejected it)."""
    mt = _fit_and_check_every_message_typed_exactly_once(messages)
    assert len({mt.classify(m) for m in messages}) == 1
    if "<FILE>" in messages[0]:
        t = mt.get(mt.classify(messages[0]))
        assert mt.classify("usage: cmd x") == UNKNOWN and not re.match(t.regex, "usage: cmd x")


def test_wildcard_over_date_matches_own_regex() -> None:
    msgs = ["last login never", "last login Sat Jul  9 22:53:19 2005"]
    mt = MessageTypes().fit(msgs)
    for m in msgs:
        t = mt.classify(m)
        assert t != UNKNOWN
        assert re.match(mt.get(t).regex, m), (m, mt.get(t).regex)


@pytest.mark.timeout(60)
def test_pathological_overlap_does_not_hang() -> None:
    """Hundreds of same-length templates of constants and wildcards: the trie search is bounded."""
    rng = random.Random(0)
    n = 40
    specs: set[tuple] = set()
    while len(specs) < 300:
        specs.add(tuple((CONST, "a") if rng.random() < 0.5 else (WILD, "") for _ in range(n - 1)) + ((CONST, "z"),))
    data = {
        "format": 1,
        "params": {"svd_variance": 0.95, "max_clusters": 10, "variable_min_distinct": 6, "extra_masks": [], "seed": 1},
        "types": [
            {"id": i + 1, "tokens": [list(t) for t in spec], "count": 1, "examples": []} for i, spec in enumerate(sorted(specs))
        ],
    }
    mt = MessageTypes.from_json(data)
    # no template ends in `q`: the whole trie is a dead end, explored under the step bound
    assert mt.classify(" ".join(["a"] * (n - 1) + ["q"])) == UNKNOWN
    for _ in range(20):
        line = " ".join([rng.choice("ab") for _ in range(n - 1)] + ["z"])
        t = mt.classify(line)
        assert type(t) is int
        if t != UNKNOWN:
            assert re.match(mt.get(t).regex, line)


def test_templates_that_differ_only_where_one_is_variable_are_joined() -> None:
    from lograven.msgtypes import SHAPE, _merge_general

    head = ((CONST, "authentication"), (CONST, "failure;"), (CONST, "ruser="))
    by_ip = head + ((SHAPE, "rhost=<IP>"), (WILD, ""))  # any user, address form
    by_name = head + ((WILD, ""), (CONST, "user=root"))  # host names, only root seen
    other = ((CONST, "authorization"),) + head[1:] + ((CONST, "rhost="), (CONST, "user=nobody"))  # a constant differs: kept
    out = _merge_general({by_ip: 239, by_name: 112, other: 3})
    joined = head + ((WILD, ""), (WILD, ""))
    assert out == {joined: 351, other: 3}
    # the join must keep at least half of its tokens constant
    a = ((CONST, "x"), (WILD, ""), (CONST, "y"), (CONST, "z"))
    b = ((WILD, ""), (CONST, "q"), (WILD, ""), (CONST, "z"))
    assert _merge_general({a: 5, b: 5}) == {a: 5, b: 5}
    # a template that covers another absorbs it (the join is the general one) ...
    general = head + ((WILD, ""), (WILD, ""))
    assert _merge_general({general: 4, by_ip: 2}) == {general: 6}
    # ... unless it keeps fewer than half of its tokens constant
    loose = ((WILD, ""), (WILD, ""), (CONST, "z"))
    tight = ((CONST, "x"), (CONST, "y"), (CONST, "z"))
    assert _merge_general({loose: 4, tight: 2}) == {loose: 4, tight: 2}


def test_keys_with_values_are_alternatives_but_paths_stay_variable() -> None:
    """BGL: `data store interrupt caused by dcbf.........0` and `...icbi.........0` are two events
    (a key and its value, different keys), as two constants would be; three keys or more are a
    variable, as for constants; shapes that are not a key and a value (paths, host names) with
    variable parts are one variable whatever their words."""
    rng = random.Random(7)
    msgs = [f"data store interrupt caused by {op}.........{rng.randint(0, 9)}" for op in ("dcbf", "icbi") for _ in range(30)]
    msgs += [f"icache prefetch {k}....................{rng.randint(0, 9)}" for k in ("depth", "threshold") for _ in range(30)]
    msgs += [f"Deleting block blk_{rng.randint(1, 10**9)} file /data/current/{sub}blk_{rng.randint(1, 10**9)}"
             for sub in ("subdir3/", "subdir17/", "") for _ in range(20)]  # fmt: skip
    msgs += [f"cache flush by {op}....{rng.randint(0, 9)}" for op in ("aa", "bb", "cc", "dd") for _ in range(10)]
    mt = MessageTypes().fit(msgs)
    ids = {m: mt.classify(m) for m in msgs}
    assert UNKNOWN not in ids.values()
    assert len({ids[m] for m in msgs[:60]}) == 2 and ids[msgs[0]] != ids[msgs[30]]
    assert len({ids[m] for m in msgs[60:120]}) == 2 and ids[msgs[60]] != ids[msgs[90]]
    assert len({ids[m] for m in msgs[120:180]}) == 1  # paths: one variable
    assert len({ids[m] for m in msgs[180:]}) == 1  # four keys: a variable
    assert mt.classify("data store interrupt caused by dcbz.........3") == UNKNOWN  # a new key is a new event
    from lograven.msgtypes import _keyed

    assert _keyed({"dcbf.........<N>", "icbi.........<N>"}) and _keyed({"depth=<N>", "size=<N>"})
    assert not _keyed({"dcbf.........<N>"}) and not _keyed({"<N>.<N>", "<N>"}) and not _keyed({"/a/b<N>", "/c<N>"})


def test_a_sign_after_a_letter_is_not_a_number_in_regexes() -> None:
    """`a-5` masks to `a-<N>` (the sign joins two alphanumerics), so the regex of the shape `a<N>` must not
    match it: keys `a`, `a-` and `ab` make three types, and each line matches exactly one regex."""
    rng = random.Random(3)
    msgs = [f"{k}{rng.randint(0, 9)} done" for k in ("a", "a-", "ab") for _ in range(10)]
    _fit_and_check_every_message_typed_exactly_once(msgs)


def _linux_auth_failure_types(seed: int) -> tuple[int, int, int]:
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared/data/loghub/Linux/Linux_2k.log_structured.csv"
    if not path.exists():
        pytest.skip(f"{path} is missing (optional data beside the repository)")
    with path.open(newline="", encoding="utf-8") as f:
        content = [row["Content"] for row in csv.DictReader(f)]
    mt = MessageTypes(seed=seed).fit(content)
    base = "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost="
    by_name = mt.classify(base + "host-7.example.org  user=root")
    by_ip = mt.classify(base + "10.1.2.3  user=guest")
    mixed = mt.classify(base + "host-7.example.org  user=guest")
    return by_name, by_ip, mixed


@pytest.mark.parametrize("seed", [42, 2, 3])
def test_mixed_forms_of_a_variable_are_one_known_type(seed: int) -> None:
    """Linux_2k: `rhost=<host name> user=root` and `rhost=<IP> user=root|guest|test`. Whichever cluster
    KMeans gives the addresses with root (seed 42: the host names'; seeds 2 and 3: guest's and test's),
    the address lines with root are the host names' template, guest and test stay two constants, and a
    host name with `user=guest` (a combination the file never shows) is guest's known type, not an
    unknown type (before 2026-12-07 (night): unknown at seed 42, and one `user=<*>` type at seeds 2 and 3)."""
    by_name, by_ip, mixed = _linux_auth_failure_types(seed=seed)
    assert UNKNOWN not in (by_name, by_ip, mixed)
    assert by_ip == mixed != by_name


def _force_clusters(monkeypatch, in_cluster) -> None:
    """KMeans is made to put each masked signature in the cluster `in_cluster(signature text)` names."""
    monkeypatch.setattr(MessageTypes, "_cluster", lambda self, sigs: np.array([in_cluster(" ".join(s)) for s in sigs]))


def test_a_template_covered_by_another_clusters_is_no_sibling(monkeypatch) -> None:
    """`rhost=<IP> user=root` beside `guest` and `test` would make three siblings, hence `user=<*>`; but
    another cluster's `<*> user=root` (host names) already explains those lines. So they are that
    template, and guest and test stay two constants, wherever the cluster boundary falls; their address
    shape widens to the host names' wildcard, so a host name with `user=guest` is guest's type."""
    names = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
    msgs = [f"login failed rhost={n}.example.org user=root" for n in names for _ in range(5)]
    msgs += [f"login failed rhost=10.0.{i}.{j} user={u}" for i in range(4) for j, u in enumerate(("root", "guest", "test"))]
    for root_with_names in (False, True):
        _force_clusters(monkeypatch, lambda sig: int("<" in sig and not (root_with_names and sig.endswith("root"))))
        mt = MessageTypes().fit(msgs)
        assert sorted(t.template for t in mt.types_) == [
            "login failed <*> user=guest",
            "login failed <*> user=root",
            "login failed <*> user=test",
        ], root_with_names
        known = mt.classify("login failed rhost=h.example user=root")
        assert mt.classify("login failed rhost=10.9.9.9 user=root") == known != UNKNOWN
        guest = mt.classify("login failed rhost=10.9.9.9 user=guest")
        assert mt.classify("login failed rhost=h.example user=guest") == guest not in (UNKNOWN, known)
        assert mt.classify("login failed rhost=10.9.9.9 user=admin") == UNKNOWN


def test_a_shape_widens_only_where_its_sibling_saw_it() -> None:
    """`data address space....<N>` beside `data address: <hex>`: one constant differs (`address` /
    `address:`) and the sibling has a wildcard where the first has a shape, but the sibling's lines never
    show that shape, so the key stays (BGL_2k): `data address 0x1f` is no known type."""
    msgs = [f"data address: 0x{i:08x}" for i in range(10)] + ["data address space.........0"] * 5
    mt = MessageTypes().fit(msgs)
    assert sorted(t.template for t in mt.types_) == ["data address space.........<*>", "data address: <*>"]
    assert mt.classify("data address 0x1f") == UNKNOWN


def test_siblings_in_different_clusters_are_one_variable(monkeypatch) -> None:
    """Three values at one position (`session closed for user cyrus|news|test`) are a variable by the
    sibling rule, also when KMeans put them in three clusters (Linux_2k at seed 3 made four types,
    so a fifth user was an unknown type). The clusters are forced here, one signature each."""
    users = ("cyrus", "news", "test")
    msgs = [f"session closed for user {u}" for u in users for _ in range(20)]
    msgs += [f"session opened for user {u} by (uid=0)" for u in users for _ in range(20)]
    monkeypatch.setattr(MessageTypes, "_cluster", lambda self, sigs: np.arange(len(sigs)))
    mt = MessageTypes().fit(msgs)
    assert sorted(t.template for t in mt.types_) == [
        "session closed for user <*>",
        "session opened for user <*> by (uid=<*>)",
    ]
    assert mt.classify("session closed for user mail") == mt.classify("session closed for user news") != UNKNOWN
    # two values stay two constants (Started/Stopped), wherever their clusters are
    two = MessageTypes().fit([f"{w} User Manager for UID 1000." for w in ("Started", "Stopped") for _ in range(20)])
    assert len(two.types_) == 2


def _types_with_and_without_widening(monkeypatch, msgs: list[str]) -> tuple[MessageTypes, MessageTypes]:
    from lograven import msgtypes

    widened = MessageTypes(seed=0).fit(msgs)
    monkeypatch.setattr(msgtypes, "_widen_sibling_shapes", lambda specs, sigs: specs)
    plain = MessageTypes(seed=0).fit(msgs)
    monkeypatch.undo()
    return widened, plain


def test_widening_never_moves_a_training_line_to_another_type(monkeypatch) -> None:
    """Review of the widening (2026-12-07 (night)): `a s=<IP> guest` widened to `a <*> guest` took `a s=hostx guest`
    from `<*> s=hostx guest` (the trie prefers the constant `a`), and took the one-item list `a x=7 guest`
    from the list type `a x=<*> ... guest`. A template now widens only where the wider form matches no
    training line it did not match already."""
    names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]
    corpora = [
        ["a s=1.2.3.4 root"] + [f"a s={w} root" for w in names] + ["a s=1.2.3.5 guest", "a s=1.2.3.6 guest"]
        + [f"{w} s=hostx guest" for w in names] + ["a s=hostx guest"],
        ["a y=1 root", "a y=2 root"] + [f"a {w} root" for w in names[:6]] + ["a y=5 guest", "a y=6 guest"]
        + ["a x=1 x=2 guest", "a x=3 x=4 x=5 guest", "a x=7 guest"],
    ]
    for msgs in corpora:
        _fit_and_check_every_message_typed_exactly_once(msgs)
        widened, plain = _types_with_and_without_widening(monkeypatch, msgs)
        for m in msgs:
            assert widened.get(widened.classify(m)).template == plain.get(plain.classify(m)).template, m


def test_widening_keeps_keys_apart_and_half_the_tokens_constant(monkeypatch) -> None:
    """Review of the widening: `connection refused port=<N>` and `... uid=<N>` (two keys, two types) both
    widened to `connection refused <*>` because their sibling `connection accepted <*>` saw both keys, so
    `connection refused everything` was known; and `<*> failed uid=<N>` widened to `<*> failed <*>`, one
    constant in three, which knew `panic failed !!!`."""
    msgs = ([f"connection accepted {v}" for v in ("port=22", "uid=0", "alice", "bob", "carol", "dave", "erin")] * 2
            + [f"connection refused port={p}" for p in (22, 80, 443)] + [f"connection refused uid={u}" for u in (0, 5, 7)])
    mt = MessageTypes(seed=42).fit(msgs)
    assert mt.classify("connection refused port=8080") != UNKNOWN
    assert mt.classify("connection refused everything") == UNKNOWN
    assert mt.classify("connection refused pid=77") == UNKNOWN
    progs = ("cron", "sshd", "su", "login", "sudo", "passwd", "systemd")
    msgs = ([f"{p} failed uid={i}" for i, p in enumerate(progs)]
            + [f"{p} accepted {v}" for p, v in zip(progs, ("uid=0", "alice", "bob", "carol", "dave", "erin", "frank"))])
    mt = MessageTypes(seed=42).fit(msgs)
    assert mt.classify("kernel failed uid=3") != UNKNOWN
    assert mt.classify("panic failed !!!") == UNKNOWN


def test_linux_types_do_not_depend_on_the_seed() -> None:
    """docs/accuracy.md, Message types: over seeds 0-9 (and 42) Linux_2k's GA is 0.989 with 112 types;
    `session closed for user <*>` is one type at every seed (before siblings were merged across clusters:
    0.742 or 0.927 at some seeds; before covered templates were absorbed first, 0.803 at seven of them)."""
    import csv
    from pathlib import Path

    from lograven.evaluate import grouping_accuracy

    path = Path(__file__).resolve().parents[2] / "shared/data/loghub/Linux/Linux_2k.log_structured.csv"
    if not path.exists():
        pytest.skip(f"{path} is missing (optional data beside the repository)")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    content, truth = [r["Content"] for r in rows], [r["EventId"] for r in rows]
    got = {}
    for seed in (42, *range(10)):
        mt = MessageTypes(seed=seed).fit(content)
        got[seed] = (round(grouping_accuracy(mt.predict(content).tolist(), truth), 3), len(mt.types_))
        closed = {mt.classify(f"session closed for user {u}") for u in ("cyrus", "news", "test", "root", "mail")}
        assert len(closed) == 1 and UNKNOWN not in closed, (seed, closed)
    assert got == dict.fromkeys((42, *range(10)), (0.989, 112))


def test_types_do_not_depend_on_the_number_of_threads() -> None:
    """KMeans' and the SVD's sums depend on how BLAS and OpenMP split the work: the same lines gave
    other types with two threads than with one (152 against 161 types here) until the clustering
    was made single-threaded."""
    import os

    from sklearn.cluster import KMeans  # noqa: F401  (load the thread pools, so the limits reach them)
    from threadpoolctl import threadpool_limits

    from lograven.generator import LogGenerator

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: nothing to compare")
    msgs = [g.text.split(": ", 1)[-1] for g in LogGenerator(seed=1).generate(5000)]
    learned = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            learned.append(sorted(str(t.tokens) for t in MessageTypes().fit(msgs).types_))
    assert learned[0] == learned[1]


# ------------------------------------------------------------------ lists (repeated tokens)


def _delete_lines(rng: random.Random, n: int, max_len: int = 8) -> list[str]:
    return [
        f"BLOCK* ask 10.250.{rng.randint(0, 255)}.{rng.randint(0, 255)}:50010 to delete "
        + " ".join(f"blk_{rng.randint(-10**18, 10**18)}" for _ in range(rng.randint(1, max_len)))
        for _ in range(n)
    ]


def test_a_list_of_any_length_is_one_type() -> None:
    """HDFS's `ask … to delete blk_1 blk_2 …` (Loghub E4): every list length, including one block and
    lengths never seen in training, is the same type, and its regex says so."""
    from lograven.msgtypes import REP_SHAPE

    rng = random.Random(3)
    other = [f"Receiving block blk_{rng.randint(0, 10**9)} src: /10.0.0.{rng.randint(1, 200)}:5 dest: /10.0.0.1:50010"
             for _ in range(200)]  # fmt: skip
    train = _delete_lines(rng, 200) + other
    mt = MessageTypes().fit(train)
    assert len(mt.types_) == 2, [t.template for t in mt.types_]
    (lists,) = [t for t in mt.types_ if t.repeats]
    assert lists.template == "BLOCK* ask <*> to delete blk_<*> ..."
    assert (REP_SHAPE, "blk_<N>") in lists.tokens
    assert lists.count == 200
    unseen_lengths = [
        "BLOCK* ask 10.1.1.1:50010 to delete " + " ".join(f"blk_{i}" for i in range(k)) for k in (1, 9, 40)
    ]
    for line in unseen_lengths:
        assert mt.classify(line) == lists.id, line
        assert re.match(lists.regex, line)
    # not a list of blocks: unknown, and no regex matches
    for line in ("BLOCK* ask 10.1.1.1:50010 to delete blk_1 /tmp/x", "BLOCK* ask 10.1.1.1:50010 to delete"):
        assert mt.classify(line) == UNKNOWN, line
        assert not any(re.match(t.regex, line) for t in mt.types_), line
    # persistence keeps the run
    loaded = copy_types(mt)
    assert [t.tokens for t in loaded.types_] == [t.tokens for t in mt.types_]
    assert loaded.classify(unseen_lengths[2]) == lists.id


def test_only_runs_of_one_variable_shape_are_lists() -> None:
    """`<IP>: <N>:` (an address and a code) and a repeated constant word are not lists: their
    token counts stay part of the type."""
    msgs = [f"Received disconnect from 10.0.{i % 7}.{i}: 11: Bye Bye [preauth]" for i in range(1, 40)]
    msgs += ["kernel: -- -- -- marker"] * 5
    mt = MessageTypes().fit(msgs)
    assert not any(t.repeats for t in mt.types_), [t.template for t in mt.types_]
    assert mt.classify("Received disconnect from 10.0.0.1: 11: 12: Bye Bye [preauth]") == UNKNOWN
    assert mt.classify("kernel: -- -- -- -- marker") == UNKNOWN


def test_fixed_template_wins_over_an_overlapping_list_and_regexes_agree() -> None:
    """A same-generation fixed template that matches a line takes it; the list's regex excludes it."""
    rng = random.Random(5)
    msgs = _delete_lines(rng, 60, max_len=5)
    # a fixed template with word wildcards where the list has block ids: `to delete <*> <*>`
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    msgs += [f"BLOCK* ask 10.0.0.{i}:50010 to delete {rng.choice(words)} {rng.choice(words)}x" for i in range(60)]
    mt = MessageTypes().fit(msgs)
    regexes = {t.id: re.compile(t.regex) for t in mt.types_}
    probes = msgs + ["BLOCK* ask 10.0.0.1:50010 to delete blk_1 blk_2", "BLOCK* ask 10.0.0.1:50010 to delete blk_1 gammax"]
    for m in probes:
        t = mt.classify(m)
        assert t != UNKNOWN, m
        assert [i for i, r in regexes.items() if r.match(m)] == [t], (m, [(x.id, x.template) for x in mt.types_])


def test_a_list_learned_later_does_not_take_lines_of_older_types() -> None:
    """`update` (lograven learn) adds a list type in a newer generation: known lines keep their type,
    new lengths of the new list get the new type, and regexes still agree with the classifier."""
    rng = random.Random(7)
    base = [f"session opened for user u{i % 9} by (uid=0)" for i in range(50)]
    base += ["to delete blk_1 soon"] * 10  # a fixed line that a later list overlaps
    mt = MessageTypes().fit(base)
    before = {m: mt.classify(m) for m in set(base)}
    new_lines = ["to delete " + " ".join(f"blk_{rng.randint(0, 10**9)}" for _ in range(rng.randint(2, 6))) + " soon"
                 for _ in range(30)]  # fmt: skip
    new_ids = mt.update(new_lines)
    assert len(new_ids) == 1 and mt.get(new_ids[0]).repeats
    assert {m: mt.classify(m) for m in set(base)} == before
    assert mt.classify("to delete blk_5 blk_6 blk_7 blk_8 blk_9 blk_10 blk_11 soon") == new_ids[0]
    regexes = {t.id: re.compile(t.regex) for t in mt.types_}
    for m in base + new_lines + ["to delete blk_2 soon"]:
        assert [i for i, r in regexes.items() if r.match(m)] == [mt.classify(m)], m


_LIST_TOKENS = ["ask", "to", "x", "blk_1", "blk_-22", "10.0.0.1", "10.0.0.2:5", "7", "0xff", "y=1", "y=2"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(_LIST_TOKENS), min_size=1, max_size=9).map(" ".join), min_size=1, max_size=40))
def test_fit_property_with_lists_every_message_typed_exactly_once(messages: list[str]) -> None:
    """Messages made of list-like tokens: every training message has one type, exactly one regex."""
    mt = _fit_and_check_every_message_typed_exactly_once(messages)
    # the stored counts are what the index does (list templates are tried in an order ids do not change)
    counts = np.bincount(mt.predict(messages), minlength=mt.n_types + 1)
    assert [t.count for t in mt.types_] == [int(counts[t.id]) for t in mt.types_]


def test_a_list_never_swallows_unknown_lines() -> None:
    """A run of fully variable tokens keeps its shape: `12 34` makes `<N> ...` (numbers only), not a
    template of any tokens that would take every line the trie misses."""
    from lograven.msgtypes import REP_SHAPE

    mt = MessageTypes().fit(["12 34", "56 78 90", "Starting service foo", "Starting service bar", "uptime 12 34"])
    assert any(t.tokens == [(REP_SHAPE, "<N>")] for t in mt.types_), [t.tokens for t in mt.types_]
    for line in ("kernel panic", "something completely new here", "uptime is unknown today"):
        assert mt.classify(line) == UNKNOWN, line
        assert not any(re.match(t.regex, line) for t in mt.types_), line
    assert mt.classify("1 2 3 4 5") != UNKNOWN and mt.classify("uptime 1 2 3") != UNKNOWN


def test_two_lists_are_never_neighbours() -> None:
    """`<N> <N> <IP> <IP>`: only the first run is a list, so a regex has no two adjacent runs to
    backtrack between (polynomial time on a line that does not match)."""
    from lograven.msgtypes import REP_SHAPE

    mt = MessageTypes().fit(["vals 1 2 10.0.0.1 10.0.0.2 0xab 0xcd done"] * 3)
    (t,) = mt.types_
    # the addresses follow a run: they stay two tokens; the hex words after them are a run again
    assert t.tokens == [(CONST, "vals"), (REP_SHAPE, "<N>"), (WILD, ""), (WILD, ""), (REP_SHAPE, "<HEX>"), (CONST, "done")]
    line = "vals 1 2 3 10.0.0.1 10.0.0.2 0xab 0xcd 0xef done"
    assert mt.classify(line) == t.id and re.match(t.regex, line)
    assert mt.classify("vals 1 10.0.0.1 10.0.0.2 10.0.0.3 0xab done") == UNKNOWN  # three addresses: not this type


def test_a_type_always_keeps_a_constant_so_a_new_word_is_unknown() -> None:
    """Android (Loghub): one-word messages (`cancelAutohide`, `schedulePeek`, ...) were one type `<*>`, which
    matched every one-word line, so a word never seen (`panic`) was a known type. A template that would keep
    no constant token is split by value instead: each word is its own type, a new word is unknown, and a
    one-token message with variable parts keeps its shape. The same holds for two tokens that both vary.
    But values that look like ids (many seen once, or few lines per value) stay one variable: a type per
    value would make the next line unknown and the model as large as the data."""
    rng = random.Random(5)
    words = ["cancelAutohide", "schedulePeek", "onExpandingStarted", "getRingtonePlayer", "resumeSuspendedAutohide",
             "querySoundEffectsEnabled", "setDisabled", "onPanelRevealed"]  # fmt: skip
    msgs = [w for w in words for _ in range(rng.randint(2, 5))]
    msgs += [f"ready=true,policy={rng.randint(1, 3)},wakefulness={rng.randint(0, 2)},manual={rng.randint(1, 99)}"
             for _ in range(20)]  # fmt: skip
    pairs = [f"{a} {b}" for a, b in zip(["red", "green", "blue", "cyan", "pink", "gray", "teal"],
                                        ["apple", "pear", "plum", "fig", "kiwi", "lime", "date"])]  # fmt: skip
    msgs += pairs * 4
    msgs += [f"Accepted password for user{rng.randint(1, 50)} from 10.0.0.{rng.randint(1, 250)}" for _ in range(30)]
    rng.shuffle(msgs)
    mt = MessageTypes().fit(msgs)
    for t in mt.types_:
        assert any(kind != WILD for kind, _ in t.tokens), t.template
    ids = {m: mt.classify(m) for m in msgs}
    assert UNKNOWN not in ids.values()
    assert len({ids[w] for w in words}) == len(words)
    assert len({ids[m] for m in msgs if m.startswith("ready=")}) == 1
    assert len({ids[p] for p in pairs}) == len(pairs)
    for new in ("panic", "Oops", "orange mango"):
        assert mt.classify(new) == UNKNOWN, new
    assert mt.classify("ready=true,policy=2,wakefulness=1,manual=7") == ids[msgs[[m.startswith("ready=") for m in msgs].index(True)]]
    assert len({ids[m] for m in msgs if m.startswith("Accepted")}) == 1

    def ids(n: int) -> list[str]:
        return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/") for _ in range(12))
                for _ in range(n)]  # fmt: skip

    # a few words, a few lines each, are words; and lines an operator names as normal (`learn`) come a few
    # at a time: six new one-word messages seen once or twice are six types, and a seventh is unknown
    assert set(words[:6]) <= {t.template for t in MessageTypes().fit(words[:6] * 3 + msgs[-40:]).types_}
    new_words = ["frobnicate", "defrost", "unwedge", "reticulate", "splines", "rebalance"]
    mt = MessageTypes().fit(msgs)
    added = mt.update(new_words * 2)
    assert len(added) == 6 and mt.classify("panic") == UNKNOWN and mt.classify("defrost") in added
    # seen once each: named as normal (learn's own lines), six types; merely around an alert, one `<*>`
    mt = MessageTypes().fit(msgs)
    added = mt.update(new_words + ["Accepted password for user7 from 10.0.0.9"], named=new_words)
    assert len(added) == 6 and mt.classify("panic") == UNKNOWN
    mt = MessageTypes().fit(msgs)
    added = mt.update(new_words, named=new_words[:5])
    assert len(added) == 1 and mt.classify("panic") == added[0]

    once, twice = ids(300), ids(200)
    pair_ids = [f"{a} {b}" for a, b in zip(ids(150), ids(150))]
    for data in (once + words, twice * 2 + words, ["heartbeat"] * 600 + once, pair_ids * 2):
        mt = MessageTypes().fit(data + msgs[-40:])
        assert mt.n_types < 20, (data[0], mt.n_types)
        probe = "zzzNeverSeen" if " " not in data[-1] else "zzz NeverSeen"
        assert mt.classify(probe) != UNKNOWN


def test_a_coarse_cluster_of_unrelated_messages_is_no_catch_all(monkeypatch) -> None:
    """Day-one review (2026-12-07): trained on /var/log/messages and /var/log/secure together, KMeans chose 6
    clusters, and each cluster's unrelated 4-word messages (`check pass; user unknown`, `imps2: Auto-detected
    intellimouse PS/2`, ...) varied at every position, so they became `<*> <*> <*> <*>`: a type that any 4-word
    line matches, and `kernel: rootkit installed in /lib/modules` was a known message. With three tokens or
    more, a group without a constant is a mix of messages, not one message: it is split on its least varied
    position, whatever its vocabulary looks like, and a new message of that length is unknown."""
    msgs = ["check pass; user unknown", "imps2: Auto-detected intellimouse PS/2", "removing device node vcsa2",
            "cupsd startup succeeded now", "syslogd restart requested here", "Kernel command line: ro",
            "Received disconnect from peer:", "ANONYMOUS FTP LOGIN FROM", "warning: can't get client",
            "PID hash table entries:", "Memory: freed unused pages", "audit: initializing netlink socket"]  # fmt: skip
    msgs += msgs[:6]  # seen once or twice: by the vocabulary rule these words look open
    _force_clusters(monkeypatch, lambda sig: 0)  # one cluster, as a too small k gives
    mt = MessageTypes().fit(msgs)
    assert not [t.template for t in mt.types_ if t.catch_all]
    ids = {m: mt.classify(m) for m in msgs}
    assert UNKNOWN not in ids.values() and len(set(ids.values())) == len(set(msgs))
    for new in ("rootkit installed in /lib/modules", "backdoor opened port 31337", "EXT3-fs: sda1 remounted read-only"):
        assert mt.classify(new) == UNKNOWN, new
    # but free text, whose lines rarely recur (a code review: 3,000 random 3-5-word lines made 3,000 types, so
    # every new line was unknown), stays one type per length; two tokens keep the vocabulary rule (above)
    rng = random.Random(3)

    def word() -> str:  # letters only: no digits for the masks to make one shape of
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))

    free = [" ".join(word() for _ in range(3)) for _ in range(300)]
    # a third of the lines recur (a second review: 300 types); every line twice (one log trained on twice)
    for data in (free + free[:100], free * 2):
        mt = MessageTypes().fit(data)
        assert mt.n_types == 1 and mt.classify("abc def ghi") != UNKNOWN


def test_syslog_and_secure_learned_together_have_no_catch_all_types() -> None:
    """The same on real logs: Linux_2k and OpenSSH_2k together (a messages + secure host) had 4 catch-all types
    over 240 lines and a grouping accuracy of 0.968 (0.940 with the lines shuffled); now at most 36 lines (0.9%)
    are in such types, one-off boot messages (free text by the rule: most of their lines come once), and
    0.988 (0.994)."""
    import csv
    from pathlib import Path

    from lograven.evaluate import grouping_accuracy

    base = Path(__file__).resolve().parents[2] / "shared/data/loghub"
    rows = []
    for name in ("Linux", "OpenSSH"):
        path = base / name / f"{name}_2k.log_structured.csv"
        if not path.exists():
            pytest.skip(f"{path} is missing (optional data beside the repository)")
        with path.open(newline="", encoding="utf-8") as f:
            rows += [(r["Content"], f"{name}:{r['EventId']}") for r in csv.DictReader(f)]
    for order in (rows, random.Random(1).sample(rows, len(rows))):
        content, truth = [c for c, _ in order], [e for _, e in order]
        mt = MessageTypes().fit(content)
        assert sum(t.count for t in mt.types_ if t.catch_all) <= 0.01 * len(content)  # one-off boot lines
        assert grouping_accuracy(mt.predict(content).tolist(), truth) >= 0.98
        # recurring messages are types of their own now: `check pass; user unknown` was in `<*> <*> <*> <*>`
        assert "<*>" not in mt.get(mt.classify("check pass; user unknown")).template


def test_messages_with_the_same_words_in_other_orders_fit_without_warnings() -> None:
    """CI (2026-12-07): a hypothesis example whose signatures were one bag of words in several orders gave
    TruncatedSVD no variance, and a RuntimeWarning (a NaN explained-variance ratio) came out of fit."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mt = MessageTypes().fit(["a b c", "c b a", "b a c", "a c b"])
    assert mt.n_types == 4
