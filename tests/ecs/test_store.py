"""ColumnStore: rows sorted by net id, quarantined ids, exact checkpoint round trip."""

import numpy as np
import pytest

from astranet.ecs.schema import Bool, Quantized, Schema, replicated
from astranet.ecs.store import ColumnStore, UnknownEntityError
from astranet.errors import StorageError


@replicated
class Pos:
    xy = Quantized(-10.0, 10.0, 0.01, size=2)
    on = Bool()


SCHEMA = Schema(Pos)


def test_spawn_assigns_increasing_ids_and_initial_values() -> None:
    store = ColumnStore(SCHEMA, capacity=2)
    ids = store.spawn(3, Pos__xy=[1.0, 2.0], Pos__on=True)
    more = store.spawn(2)
    assert ids.tolist() == [1, 2, 3] and more.tolist() == [4, 5]
    assert len(store) == 5 and store.net_ids.tolist() == [1, 2, 3, 4, 5]
    assert store["Pos.xy"][:3].tolist() == [[1.0, 2.0]] * 3
    assert store["Pos.on"].tolist() == [True, True, True, False, False]


def test_despawn_keeps_order_and_rows_follow_ids() -> None:
    store = ColumnStore(SCHEMA)
    ids = store.spawn(5)
    store["Pos.xy"][:, 0] = np.arange(5)
    store.despawn([ids[1], ids[3]])
    assert store.net_ids.tolist() == [1, 3, 5]
    assert store["Pos.xy"][:, 0].tolist() == [0.0, 2.0, 4.0]
    assert store.rows([5, 1]).tolist() == [2, 0]
    assert store.contains([1, 2, 5, 99]).tolist() == [True, False, True, False]
    with pytest.raises(UnknownEntityError):
        store.rows([2])
    with pytest.raises(KeyError):  # also a KeyError
        store.despawn([2])


def test_row_follows_structural_changes_and_refuses_dead_ids() -> None:
    store = ColumnStore(SCHEMA)
    ids = store.spawn(5).tolist()
    generation = store.generation
    assert [store.row(i) for i in ids] == [0, 1, 2, 3, 4]
    assert store.row(ids[4]) == 4 and store.generation == generation  # lookups change nothing
    store.despawn([ids[0], ids[2]])
    assert store.generation > generation
    assert store.row(ids[4]) == 2 and store.row(ids[1]) == 0
    for gone in (ids[0], ids[2], 0, 99, -1, 1 << 40):
        with pytest.raises(UnknownEntityError):
            store.row(gone)
    store.replace_all(np.array([ids[4]], dtype=np.uint32), [np.zeros((1, 2)), np.zeros(1)])
    assert store.row(ids[4]) == 0
    with pytest.raises(UnknownEntityError):
        store.row(ids[1])


def test_ids_are_not_reused_while_quarantined() -> None:
    store = ColumnStore(SCHEMA, quarantine=3)
    store._next_id = (1 << 32) - 2  # two fresh ids left
    first = store.spawn(2)
    store.despawn(first)
    with pytest.raises(UnknownEntityError):
        store.spawn(1)  # nothing fresh, both freed ids still quarantined
    for _ in range(2):
        store.advance_clock()
    with pytest.raises(UnknownEntityError):
        store.spawn(1)  # only 2 of the 3 quarantine captures have happened
    store.advance_clock()  # now no snapshot of a 3-deep ring still holds the freed ids
    recycled = store.spawn(2)
    assert sorted(recycled.tolist()) == sorted(first.tolist())
    assert np.all(np.diff(store.net_ids.astype(np.int64)) > 0)


def test_recycled_ids_are_resorted_with_their_rows() -> None:
    store = ColumnStore(SCHEMA, quarantine=0)
    store._next_id = (1 << 32) - 3
    a, b, c = store.spawn(3).tolist()
    store.despawn([a])
    store.advance_clock()
    store.spawn(1, Pos__xy=[7.0, 7.0])  # recycles `a`, below b and c
    assert store.net_ids.tolist() == [a, b, c]
    assert store["Pos.xy"][0].tolist() == [7.0, 7.0]


def test_ids_recycled_in_freed_order_are_resorted() -> None:
    # Regression: recycled ids come in the order they were freed (here c, b, a: descending);
    # spawn only compared the lowest new id with the last live row, so into an empty store
    # (or above every live id) they stayed unsorted and rows()/row() could not find them.
    store = ColumnStore(SCHEMA, quarantine=0)
    store._next_id = (1 << 32) - 3
    a, b, c = store.spawn(3).tolist()
    for net_id in (c, b, a):
        store.despawn([net_id])
        store.advance_clock()
    recycled = store.spawn(3, Pos__xy=[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    assert recycled.tolist() == [c, b, a]  # freed order: oldest first
    assert store.net_ids.tolist() == [a, b, c]
    assert store.rows([a, b, c]).tolist() == [0, 1, 2]
    assert store.row(c) == 2
    assert store["Pos.xy"][store.row(c)].tolist() == [1.0, 1.0]  # values moved with their ids


def test_recycled_ids_above_every_live_id_are_sorted() -> None:
    store = ColumnStore(SCHEMA, quarantine=0)
    store._next_id = (1 << 32) - 4
    low, a, b, c = store.spawn(4).tolist()
    store.despawn([c])
    store.advance_clock()
    store.despawn([a, b])
    store.advance_clock()
    store.spawn(3)  # recycles c, a, b: all above the live `low`
    assert store.net_ids.tolist() == [low, a, b, c]
    assert np.array_equal(store.contains([low, a, b, c]), [True] * 4)


def test_cached_views_follow_structural_changes() -> None:
    store = ColumnStore(SCHEMA)
    ids = store.spawn(3)
    assert store.net_ids is store.net_ids and not store.net_ids.flags.writeable
    columns = store.columns()
    assert columns is not store.columns()  # a fresh list: callers may change it
    columns.clear()
    assert len(store.columns()) == len(SCHEMA)
    store.despawn(ids[:1])
    assert store.net_ids.tolist() == ids[1:].tolist()
    assert all(len(column) == 2 for column in store.columns())
    store.spawn(300)  # grows the arrays: the views must follow
    assert len(store.net_ids) == 302 and all(len(c) == 302 for c in store.columns())


def test_export_import_round_trips_exactly() -> None:
    store = ColumnStore(SCHEMA)
    ids = store.spawn(4, Pos__xy=np.arange(8, dtype=np.float32).reshape(4, 2))
    store.despawn(ids[:1])
    store.advance_clock()
    state = store.export_state()
    copy = ColumnStore(SCHEMA)
    copy.import_state(state)
    assert copy.net_ids.tolist() == store.net_ids.tolist()
    assert np.array_equal(copy["Pos.xy"], store["Pos.xy"])
    assert copy.spawn(1).tolist() == store.spawn(1).tolist() == [5]
    assert copy.clock == store.clock
    for a, b in zip(copy.export_state().values(), store.export_state().values(), strict=True):
        assert np.array_equal(a, b)


def test_import_rejects_foreign_or_inconsistent_state() -> None:
    store = ColumnStore(SCHEMA)
    store.spawn(2)
    state = store.export_state()
    with pytest.raises(StorageError):
        ColumnStore(SCHEMA).import_state({k: v for k, v in state.items() if k != "Pos.on"})
    bad = dict(state, **{"__net_ids__": np.array([2, 1], dtype=np.uint32)})
    with pytest.raises(StorageError):
        ColumnStore(SCHEMA).import_state(bad)
    bad = dict(state, **{"__freed_ids__": np.array([3, 4], np.uint32)})
    bad["__freed_at__"] = np.array([5, 2], dtype=np.int64)  # freed times must not decrease
    with pytest.raises(StorageError):
        ColumnStore(SCHEMA).import_state(bad)
    bad = dict(state, **{"__fingerprint__": np.array([1])})
    with pytest.raises(StorageError):
        ColumnStore(SCHEMA).import_state(bad)


@pytest.mark.parametrize("fold_every", [3, 1024])
def test_freed_ids_are_remembered_oldest_first_up_to_the_limit(monkeypatch, fold_every) -> None:
    # Despawns append to pending lists folded in when read (or every fold_every ids); the
    # result must be what appending every despawn's ids (with its clock) and keeping the
    # newest limit gives.
    import astranet.ecs.store as store_module

    monkeypatch.setattr(store_module, "MAX_RECYCLABLE_IDS", 7)
    monkeypatch.setattr(store_module, "_FREED_PENDING", fold_every)
    store = ColumnStore(SCHEMA)
    ids = store.spawn(40, Pos__xy=np.arange(80, dtype=np.float32).reshape(40, 2))
    expected: list[tuple[int, int]] = []
    rng = np.random.default_rng(5)
    live = ids.tolist()
    for step in range(12):
        gone = sorted(rng.choice(live, size=int(rng.integers(1, 4)), replace=False).tolist())
        store.despawn(gone)
        live = [i for i in live if i not in gone]
        expected += [(i, store.clock) for i in gone]
        if step % 3 == 0:
            store.advance_clock()
        assert store.net_ids.tolist() == live
        assert store["Pos.xy"][:, 0].tolist() == [2.0 * (i - 1) for i in live]  # rows kept
        if step % 4 == 1:  # a checkpoint reads them mid-way
            state = store.export_state()
            assert state["__freed_ids__"].tolist() == [i for i, _ in expected[-7:]]
            assert state["__freed_at__"].tolist() == [at for _, at in expected[-7:]]
    state = store.export_state()
    freed = zip(state["__freed_ids__"].tolist(), state["__freed_at__"].tolist(), strict=True)
    assert list(freed) == expected[-7:]
    copy = ColumnStore(SCHEMA)
    copy.import_state(state)
    assert copy.export_state()["__freed_ids__"].tolist() == state["__freed_ids__"].tolist()
