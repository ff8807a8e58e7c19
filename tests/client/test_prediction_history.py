"""astranet.replication.prediction: history ring, reconciliation decision, smoothing, layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.ecs import ColumnStore
from astranet.examples.dots import Dots, move_avatar
from astranet.replication import Replica, capture, encode_payload
from astranet.replication.prediction import (
    CorrectionSmoother,
    PredictionError,
    PredictionHistory,
    StateLayout,
    compare_prediction,
    read_rows,
    write_row,
)

SCHEMA = Dots.schema
LAYOUT = StateLayout.of(SCHEMA)
DT_S = 1 / 30


def _state(x: float, y: float = 0.0) -> np.ndarray:
    return np.array([x, y, 0.0, 0.0, 0.0])


# -- layout -------------------------------------------------------------------------------


def test_layout_puts_every_field_side_by_side_in_schema_order():
    assert LAYOUT.names == ("Body.pos", "Body.vel", "Body.kind")
    assert LAYOUT.slices == {
        "Body.pos": slice(0, 2),
        "Body.vel": slice(2, 4),
        "Body.kind": slice(4, 5),
    }
    assert LAYOUT.width == 5
    assert LAYOUT.mask(["Body.pos"]).tolist() == [True, True, False, False, False]
    assert LAYOUT.mask(None).all()
    with pytest.raises(PredictionError, match=r"unknown field 'Body\.nope'"):
        LAYOUT.mask(["Body.nope"])


def test_read_rows_of_an_empty_store_has_the_layout_width():
    assert read_rows(ColumnStore(SCHEMA)).shape == (0, 5)


@settings(max_examples=300)
@given(st.lists(st.floats(-4000, 4000), min_size=5, max_size=5), st.integers(1, 6))
def test_write_row_then_read_rows_round_trips(values: list[float], count: int):
    store = ColumnStore(SCHEMA)
    ids = store.spawn(count)
    state = np.array(values)
    write_row(store, int(ids[-1]), state)
    rows = read_rows(store)
    assert rows.shape == (count, LAYOUT.width)
    # The store's columns are float32: values come back as the column dtype holds them.
    assert rows[-1].tolist() == state.astype(np.float32).astype(np.float64).tolist()
    assert not rows[:-1].any()  # the other rows are untouched


def test_write_row_refuses_a_state_of_the_wrong_width():
    store = ColumnStore(SCHEMA)
    net_id = int(store.spawn(1)[0])
    with pytest.raises(PredictionError, match="6 columns, the store 5"):
        write_row(store, net_id, np.zeros(6))


# -- history ------------------------------------------------------------------------------


def test_history_records_acknowledges_and_lists_pending_in_order():
    history = PredictionHistory(5)
    for seq in (3, 4, 7):
        history.record(seq, (seq, 0), _state(seq))
    assert history.state_at(4).tolist() == _state(4).tolist()
    assert history.state_at(5) is None
    history.acknowledge(4)
    assert [entry.seq for entry in history.pending()] == [7]
    # The acknowledged newest stays comparable: snapshots repeat last_input_seq.
    assert history.state_at(4) is not None and history.state_at(3) is None
    history.restate(7, _state(70))
    assert history.newest.state[0] == 70 and history.newest.command == (7, 0)


def test_history_is_bounded_and_counts_what_it_forgot():
    history = PredictionHistory(5, capacity=4)
    for seq in range(1, 11):
        history.record(seq, None, _state(seq))
    assert len(history) == 4 and history.overflowed == 6
    assert [entry.seq for entry in history.pending()] == [7, 8, 9, 10]


def test_history_refuses_misuse_with_its_error():
    history = PredictionHistory(5)
    history.record(5, None, _state(1))
    with pytest.raises(PredictionError, match="seq 5 is not after 5"):
        history.record(5, None, _state(1))
    with pytest.raises(PredictionError, match="expected 5"):
        history.record(6, None, np.zeros(3))
    with pytest.raises(PredictionError, match="not in the history"):
        history.restate(9, _state(1))
    with pytest.raises(PredictionError):
        PredictionHistory(0)


def test_recorded_states_are_private_copies():
    history = PredictionHistory(5)
    state = _state(1)
    history.record(1, None, state)
    state[0] = 99
    assert history.state_at(1)[0] == 1
    with pytest.raises(ValueError):
        history.state_at(1)[0] = 5


# -- compare_prediction -------------------------------------------------------------------


def test_exact_prediction_is_zero_error_and_no_rewind():
    history = PredictionHistory(5)
    history.record(1, None, _state(1.5))
    history.record(2, None, _state(2.5))
    outcome = compare_prediction(history, 1, _state(1.5))
    assert outcome.error == 0.0 and not outcome.rewind and outcome.compared
    assert [entry.seq for entry in history.pending()] == [2]


def test_mismatch_reports_the_largest_difference_and_rewinds():
    history = PredictionHistory(5)
    history.record(1, None, _state(1.0, 2.0))
    outcome = compare_prediction(history, 1, _state(1.25, 1.0))
    assert outcome.error == 1.0 and outcome.rewind


def test_tolerance_and_column_mask_limit_what_counts_as_a_mismatch():
    history = PredictionHistory(5)
    history.record(1, None, _state(1.0))
    assert not compare_prediction(history, 1, _state(1.01), tolerance=0.05).rewind
    history.record(2, None, np.array([2.0, 0, 0, 0, 0]))
    moved_velocity_only = np.array([2.0, 0, 9, 9, 0])
    outcome = compare_prediction(history, 2, moved_velocity_only, columns=LAYOUT.mask(["Body.pos"]))
    assert outcome.error == 0.0 and not outcome.rewind


def test_no_applied_input_compares_nothing():
    history = PredictionHistory(5)
    history.record(1, None, _state(1))
    outcome = compare_prediction(history, None, _state(0))
    assert math.isnan(outcome.error) and not outcome.rewind and not outcome.compared
    assert len(history) == 1


def test_a_seq_never_predicted_rewinds_and_a_fresh_history_adopts():
    history = PredictionHistory(5, capacity=2)
    for seq in (1, 2, 3):
        history.record(seq, None, _state(seq))  # seq 1 forgotten by overflow
    outcome = compare_prediction(history, 1, _state(1))
    assert outcome.rewind and outcome.error == math.inf
    fresh = compare_prediction(PredictionHistory(5), 40, _state(1))
    assert fresh.rewind and not fresh.compared  # nothing to compare: adopt the server state


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.integers(-89, 89), st.integers(-89, 89)), min_size=1, max_size=40),
    st.data(),
)
def test_prediction_from_the_replicated_state_is_bit_exact(commands, data):
    """The determinism contract: server state -> snapshot -> replica -> replay == server."""
    acked = data.draw(st.integers(0, len(commands) - 1))
    server = ColumnStore(SCHEMA)
    net_id = int(server.spawn(1, Body__pos=(data.draw(st.integers(-40, 40)) / 512, 3.0))[0])
    for command in commands[:acked]:
        move_avatar(server, net_id, command, DT_S)
    replica = Replica(SCHEMA)
    replica.apply(1, None, *encode_payload(SCHEMA, capture(server, 1, acked)), acked)
    history = PredictionHistory(LAYOUT.width)
    client = ColumnStore(SCHEMA)
    client.replace_all(replica.store.net_ids, replica.store.columns())
    for seq, command in enumerate(commands[acked:], start=acked + 1):
        move_avatar(client, net_id, command, DT_S)
        history.record(seq, command, read_rows(client)[0])
    for command in commands[acked:]:
        move_avatar(server, net_id, command, DT_S)
    outcome = compare_prediction(history, len(commands), read_rows(server)[0])
    assert outcome.error == 0.0 and not outcome.rewind


# -- smoothing ----------------------------------------------------------------------------


def test_correction_offset_decays_linearly_to_zero():
    smoother = CorrectionSmoother(5, decay_ms=100.0)
    smoother.correct(1000.0, before=_state(3.0), after=_state(1.0))
    assert smoother.offset(1000.0)[0] == 2.0
    assert smoother.offset(1050.0)[0] == pytest.approx(1.0)
    assert smoother.offset(1100.0)[0] == 0.0
    assert smoother.magnitude(2000.0) == 0.0


def test_corrections_accumulate_and_a_mask_limits_the_columns():
    smoother = CorrectionSmoother(5, decay_ms=100.0, columns=LAYOUT.mask(["Body.pos"]))
    smoother.correct(0.0, before=np.array([2.0, 0, 5, 0, 0]), after=np.zeros(5))
    smoother.correct(50.0, before=np.array([1.0, 0, 0, 0, 0]), after=np.zeros(5))
    offset = smoother.offset(50.0)
    assert offset[0] == pytest.approx(2.0) and offset[2] == 0.0  # velocity is not smoothed


def test_zero_decay_snaps_and_bad_decay_is_refused():
    smoother = CorrectionSmoother(5, decay_ms=0.0)
    smoother.correct(0.0, before=_state(5.0), after=_state(0.0))
    assert smoother.magnitude(0.0) == 0.0
    with pytest.raises(PredictionError):
        CorrectionSmoother(5, decay_ms=-1.0)
