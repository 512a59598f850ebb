"""The spill index (broker/_spill.py): handle references, membership bits and the
coalescing table, checked against plain Python sets and dicts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gearshift.broker._spill import MAX_PREFIXES, SpillIndex


def test_references_round_trip_and_refuse_what_they_cannot_hold() -> None:
    index = SpillIndex()
    for handle in (b"H:host:1.1", b"H:host:1.0", b"H:other:17.68719476735", b"9"):
        ref = index.ref(handle, create=True)
        assert ref > 0
        assert index.handle(ref) == handle
        assert index.ref(handle) == ref
    assert index.ref(b"H:host:2.5") == -1  # unknown prefix, not created on lookup
    for bad in (b"H:host:1.", b"H:host:1.007", b"H:host:1.68719476736", b"", b"abc"):
        assert index.ref(bad, create=True) == -1, bad
    assert index.ref(b"H:host:1.1") != index.ref(b"H:other:17.1", create=True)


def test_too_many_prefixes_are_refused() -> None:
    index = SpillIndex()
    refs = [index.ref(b"P%d:1" % n, create=True) for n in range(MAX_PREFIXES + 5)]
    assert all(r > 0 for r in refs[:MAX_PREFIXES - 1])
    assert refs[-1] == -1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300_000)), max_size=400))
def test_membership_matches_a_set(ops: list[tuple[bool, int]]) -> None:
    index = SpillIndex()
    base = index.ref(b"H:x:1", create=True) - 1
    model: set[int] = set()
    for add, number in ops:
        ref = base + number
        if add:
            index.mark(ref)
            model.add(ref)
        else:
            assert index.unmark(ref) == (ref in model)
            model.discard(ref)
        assert index.count == len(model)
    assert index.refs() == sorted(model)
    assert all(index.holds(r) for r in model)
    assert not index.holds(-1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 60), st.integers(1, 3000)),
                max_size=3000))
def test_coalescing_table_matches_a_dict(ops: list[tuple[bool, int, int]]) -> None:
    """Adds and removes in any order (tombstones, growth and shrinking included) keep
    exactly the entries a dict of key -> refs keeps; few distinct hashes force probing."""
    index = SpillIndex()
    model: dict[int, list[int]] = {}
    for add, key, ref in ops:
        h = key + 2  # small hashes: many entries share probe runs
        if add:
            if ref in model.get(h, []):
                continue
            index.add_key(h, ref)
            model.setdefault(h, []).append(ref)
        else:
            index.remove_key(h, ref)
            if ref in model.get(h, []):
                model[h].remove(ref)
    for h, refs in model.items():
        assert sorted(index.candidates(h)) == sorted(refs)
    assert index.keys == sum(len(r) for r in model.values())


def test_table_grows_and_keeps_every_key() -> None:
    index = SpillIndex()
    for n in range(50_000):
        index.add_key(SpillIndex.key_hash(b"f", b"k%d" % n, b""), n + 1)
    assert index.table_bytes <= 16 * 2 ** 17
    assert all(n + 1 in index.candidates(SpillIndex.key_hash(b"f", b"k%d" % n, b""))
               for n in range(0, 50_000, 97))
    for n in range(50_000):
        index.remove_key(SpillIndex.key_hash(b"f", b"k%d" % n, b""), n + 1)
    assert index.keys == 0
    index.add_key(5, 1)  # removals leave tombstones; a later add may shrink the table
    assert index.candidates(5) == [1]


def test_key_hash_separates_functions_and_payload_keys() -> None:
    h = SpillIndex.key_hash
    assert h(b"f", b"u", b"data") == h(b"f", b"u", b"other")  # the payload is not the key
    assert h(b"f", b"u", b"") != h(b"g", b"u", b"")
    assert h(b"f", b"-", b"abc") != h(b"f", b"-", b"abd")  # "-": the payload is the key
    assert h(b"f", b"-", b"abc") != h(b"f", b"abc", b"")
