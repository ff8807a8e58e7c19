"""Tests of astranet.server.matchmaking (WIRE.md rules 2 and 7), driven by a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.errors import (
    BadRequest,
    ConfigurationError,
    InvalidState,
    MatchmakingError,
    ResumeDenied,
    RoomFull,
    RoomNotFound,
    UnknownRegion,
)
from astranet.server.matchmaking import Matchmaker, RoomInfo, Seat, new_room_id
from astranet.testing import FakeClock

REGIONS = ("us-east", "us-west", "eu-central")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def mm(clock: FakeClock) -> Matchmaker:
    return Matchmaker(REGIONS, None, clock=clock)


def occupancy(mm: Matchmaker) -> dict[str, tuple[int, int]]:
    return {room.room_id: (room.players, room.held_seats) for room in mm.rooms()}


def test_room_ids_are_8_alphanumerics_and_vary() -> None:
    ids = {new_room_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9]{8}", room_id) for room_id in ids)


def test_first_request_creates_then_joins_until_capacity(mm: Matchmaker) -> None:
    first = mm.find_or_create("us-east", "coop", 1)
    assert first.created
    seats = [mm.find_or_create("us-east", "coop", 1) for _ in range(3)]
    assert all(seat.room_id == first.room_id and not seat.created for seat in seats)
    fifth = mm.find_or_create("us-east", "coop", 1)
    assert fifth.created and fifth.room_id != first.room_id
    assert occupancy(mm) == {first.room_id: (4, 0), fifth.room_id: (1, 0)}


def test_party_holds_seats_that_count_against_capacity(mm: Matchmaker) -> None:
    party = mm.find_or_create("us-east", "coop", 3)
    assert occupancy(mm) == {party.room_id: (1, 2)}
    # 1 player + 2 held + 2 does not fit in 4: a new room.
    pair = mm.find_or_create("us-east", "coop", 2)
    assert pair.room_id != party.room_id
    solo = mm.find_or_create("us-east", "coop", 1)
    assert solo.room_id == party.room_id  # 1 + 2 + 1 == 4 fits; it is also the fullest


def test_prefers_the_fullest_fitting_room(clock: FakeClock) -> None:
    ids = iter(["AAAAAAAA", "BBBBBBBB", "CCCCCCCC"])
    mm = Matchmaker(REGIONS, None, clock=clock, room_id_factory=lambda: next(ids))
    mm.restore_room("ROOMone1", "us-east", "coop", 1)
    mm.restore_room("ROOMtwo2", "us-east", "coop", 3)
    mm.restore_room("ROOMtre3", "us-east", "coop", 2)
    assert mm.find_or_create("us-east", "coop", 1).room_id == "ROOMtwo2"
    # Now ROOMtwo2 is full; ROOMtre3 (2) beats ROOMone1 (1).
    assert mm.find_or_create("us-east", "coop", 1).room_id == "ROOMtre3"
    # A party of 2 fits ROOMone1 (1+2) but not ROOMtre3 (3+2).
    assert mm.find_or_create("us-east", "coop", 2).room_id == "ROOMone1"


def test_ties_go_to_the_oldest_room(clock: FakeClock) -> None:
    mm = Matchmaker(REGIONS, None, clock=clock)
    mm.restore_room("OLDroom1", "us-east", "coop", 2)
    mm.restore_room("NEWroom1", "us-east", "coop", 2)
    assert mm.find_or_create("us-east", "coop", 1).room_id == "OLDroom1"


def test_regions_and_modes_never_mix(mm: Matchmaker) -> None:
    seats = {
        (region, mode): mm.find_or_create(region, mode, 1).room_id
        for region, mode in itertools.product(REGIONS, ("coop", "duel"))
    }
    assert len(set(seats.values())) == 6
    rows = {row.room_id: (row.region, row.game_mode) for row in mm.rooms()}
    assert all(rows[room_id] == key for key, room_id in seats.items())


def test_join_room_consumes_held_seat_before_free_seats(mm: Matchmaker, clock) -> None:
    party = mm.find_or_create("us-east", "coop", 4)
    assert occupancy(mm) == {party.room_id: (1, 3)}
    assert party.party_token is not None and len(party.party_token) == 16
    for expected_holds in (2, 1, 0):
        seat = mm.join_room(party.room_id, party.party_token)
        assert seat == Seat(party.room_id, created=False, held=True)
        assert occupancy(mm)[party.room_id] == (4 - expected_holds, expected_holds)
    with pytest.raises(RoomFull):
        mm.join_room(party.room_id)


def test_held_seats_open_only_with_the_partys_token(mm: Matchmaker) -> None:
    party = mm.find_or_create("us-east", "coop", 4)
    other = mm.find_or_create("us-east", "duel", 2)
    for token in (None, b"\x00" * 16, other.party_token):
        with pytest.raises(RoomFull):
            mm.join_room(party.room_id, token)
    assert mm.find_or_create("us-east", "coop", 1).party_token is None
    three = mm.find_or_create("eu-central", "coop", 2)
    assert mm.join_room(three.room_id).held is False  # a free seat needs no token
    assert mm.join_room(three.room_id, three.party_token).held is True


def test_open_buckets_are_pruned(mm: Matchmaker) -> None:
    seats = [mm.find_or_create("us-east", f"mode{i}", 1) for i in range(50)]
    assert mm.open_buckets == 50
    for seat in seats:
        mm.close_room(seat.room_id)
    assert mm.open_buckets == 0
    full = mm.find_or_create("us-east", "x", 4)
    for _ in range(3):
        mm.join_room(full.room_id, full.party_token)
    assert mm.open_buckets == 0  # a full room leaves no empty bucket behind


def test_held_seats_are_not_given_to_strangers(mm: Matchmaker) -> None:
    party = mm.find_or_create("us-east", "coop", 4)
    stranger = mm.find_or_create("us-east", "coop", 1)
    assert stranger.room_id != party.room_id


def test_join_room_takes_a_free_seat_without_holds(mm: Matchmaker) -> None:
    solo = mm.find_or_create("eu-central", "duel", 1)
    assert mm.join_room(solo.room_id) == Seat(solo.room_id, created=False, held=False)
    assert occupancy(mm)[solo.room_id] == (2, 0)


def test_holds_expire_after_hold_seconds(mm: Matchmaker, clock: FakeClock) -> None:
    party = mm.find_or_create("us-east", "coop", 3)
    clock.now += 29.999
    assert occupancy(mm)[party.room_id] == (1, 2)
    clock.now += 0.001  # exactly 30 s: expired
    assert occupancy(mm)[party.room_id] == (1, 0)
    # The seats are free again: a stranger's JoinRoom takes a free (not held) seat.
    assert mm.join_room(party.room_id).held is False
    assert mm.find_or_create("us-east", "coop", 2).room_id == party.room_id


def test_hold_seconds_is_configurable(clock: FakeClock) -> None:
    mm = Matchmaker(REGIONS, None, clock=clock, hold_seconds=5.0)
    party = mm.find_or_create("us-east", "coop", 2)
    clock.now += 5.0
    assert mm.room(party.room_id).held_seats == 0


def test_unknown_room_and_errors_carry_wire_codes(mm: Matchmaker) -> None:
    with pytest.raises(RoomNotFound) as info:
        mm.join_room("NoSuchId")
    assert str(info.value) == "room ID does not exist"
    assert info.value.code == "room_not_found"
    with pytest.raises(RoomNotFound):
        mm.release("NoSuchId")
    with pytest.raises(RoomNotFound):
        mm.join_room(12345)  # type: ignore[arg-type]


def test_unknown_region_names_the_served_regions(mm: Matchmaker) -> None:
    with pytest.raises(UnknownRegion) as info:
        mm.find_or_create("mars", "coop", 1)
    assert info.value.code == "unknown_region"
    assert "us-east, us-west, eu-central" in str(info.value) and "'mars'" in str(info.value)


@pytest.mark.parametrize("party_size", [0, 5, -1, 2.0, "2", True, None])
def test_party_size_outside_1_to_4_is_bad_request(mm: Matchmaker, party_size: object) -> None:
    with pytest.raises(BadRequest) as info:
        mm.find_or_create("us-east", "coop", party_size)  # type: ignore[arg-type]
    assert info.value.code == "bad_request"
    assert mm.rooms() == []


@pytest.mark.parametrize("game_mode", ["", "x" * 33, "with space", "ünï", None, 7])
def test_malformed_game_mode_is_bad_request(mm: Matchmaker, game_mode: object) -> None:
    with pytest.raises(BadRequest):
        mm.find_or_create("us-east", game_mode, 1)  # type: ignore[arg-type]


def test_configured_game_modes_reject_others(clock: FakeClock) -> None:
    mm = Matchmaker(REGIONS, ["coop", "duel"], clock=clock)
    assert mm.find_or_create("us-east", "duel", 1).created
    with pytest.raises(BadRequest, match="not served; this server serves: coop, duel"):
        mm.find_or_create("us-east", "ffa", 1)


def test_release_frees_a_seat_and_room_stays(mm: Matchmaker) -> None:
    seat = mm.find_or_create("us-east", "coop", 1)
    mm.release(seat.room_id)
    assert occupancy(mm) == {seat.room_id: (0, 0)}
    with pytest.raises(InvalidState):
        mm.release(seat.room_id)
    assert mm.find_or_create("us-east", "coop", 1).room_id == seat.room_id


def test_close_room_forgets_it(mm: Matchmaker) -> None:
    seat = mm.find_or_create("us-east", "coop", 2)
    assert mm.close_room(seat.room_id) is True
    assert mm.close_room(seat.room_id) is False
    assert mm.rooms() == []
    with pytest.raises(RoomNotFound):
        mm.join_room(seat.room_id)


def test_resume_hold_keeps_seat_until_window_passes(clock: FakeClock) -> None:
    mm = Matchmaker(REGIONS, None, clock=clock, resume_seconds=30.0)
    seat = mm.find_or_create("us-east", "coop", 1)
    for _ in range(3):
        mm.join_room(seat.room_id)
    mm.hold_for_resume(seat.room_id, "p1")
    assert mm.room(seat.room_id).players == 4  # the dropped player's seat is still taken
    with pytest.raises(RoomFull):
        mm.join_room(seat.room_id)
    clock.now += 10
    assert mm.resume(seat.room_id, "p1") == Seat(seat.room_id, held=True)
    with pytest.raises(ResumeDenied):
        mm.resume(seat.room_id, "p1")  # the hold is consumed
    # Drop again and let the window pass: the seat frees itself and the expiry is reported once.
    mm.hold_for_resume(seat.room_id, "p1")
    clock.now += 30.0
    assert mm.room(seat.room_id).players == 3
    assert mm.drain_expired_resumes() == [(seat.room_id, "p1")]
    assert mm.drain_expired_resumes() == []
    with pytest.raises(ResumeDenied) as info:
        mm.resume(seat.room_id, "p1")
    assert info.value.code == "resume_denied"


def test_resume_hold_needs_a_connected_player(mm: Matchmaker) -> None:
    seat = mm.find_or_create("us-east", "coop", 1)
    mm.hold_for_resume(seat.room_id, "p1")
    with pytest.raises(InvalidState):
        mm.hold_for_resume(seat.room_id, "p2")  # nobody else is connected
    with pytest.raises(ResumeDenied):
        mm.resume("NoSuchId", "p1")


def test_restore_room_validates_and_rejects_duplicates(mm: Matchmaker) -> None:
    mm.restore_room("Restored", "us-west", "coop", 2)
    assert mm.room("Restored") == RoomInfo("Restored", "us-west", "coop", 2, 4, 0)
    assert mm.room("Restored").as_json(tick=77) == {
        "room_id": "Restored", "region": "us-west", "game_mode": "coop",
        "players": 2, "capacity": 4, "tick": 77,
    }  # fmt: skip
    with pytest.raises(InvalidState):
        mm.restore_room("Restored", "us-west", "coop", 1)
    with pytest.raises(InvalidState):
        mm.restore_room("short", "us-west", "coop", 1)
    with pytest.raises(InvalidState):
        mm.restore_room("Toomany1", "us-west", "coop", 5)
    with pytest.raises(UnknownRegion):
        mm.restore_room("Elsewher", "mars", "coop", 1)


def test_room_id_collisions_are_retried(clock: FakeClock) -> None:
    ids = iter(["SAMESAME", "SAMESAME", "OTHER123"])
    mm = Matchmaker(REGIONS, None, clock=clock, room_id_factory=lambda: next(ids))
    assert mm.find_or_create("us-east", "a", 1).room_id == "SAMESAME"
    assert mm.find_or_create("us-east", "b", 1).room_id == "OTHER123"


def test_max_rooms_is_enforced(clock: FakeClock) -> None:
    mm = Matchmaker(REGIONS, None, clock=clock, max_rooms=2)
    mm.find_or_create("us-east", "a", 1)
    mm.find_or_create("us-east", "b", 1)
    with pytest.raises(RoomFull, match="limit of 2 rooms"):
        mm.find_or_create("us-east", "c", 1)


def test_all_errors_are_matchmaking_or_bad_request(mm: Matchmaker) -> None:
    assert issubclass(RoomFull, MatchmakingError) and issubclass(UnknownRegion, MatchmakingError)


@pytest.mark.timeout(20)
async def test_1000_concurrent_solo_requests_fill_rooms_exactly(mm: Matchmaker) -> None:
    async def request() -> Seat:
        await asyncio.sleep(0)  # interleave the coroutines before the (atomic) call
        return mm.find_or_create("us-east", "coop", 1)

    seats = await asyncio.gather(*(request() for _ in range(1000)))
    rows = mm.rooms()
    assert len(rows) == 250
    assert all((row.players, row.held_seats) == (4, 0) for row in rows)
    assert sum(seat.created for seat in seats) == 250


@pytest.mark.timeout(20)
async def test_1000_concurrent_mixed_parties_never_overfill(mm: Matchmaker) -> None:
    sizes = [1 + (i * 7) % 4 for i in range(1000)]  # deterministic mix of 1..4
    regions = [REGIONS[i % 3] for i in range(1000)]

    async def request(region: str, size: int) -> Seat:
        await asyncio.sleep(0)
        return mm.find_or_create(region, "coop", size)

    seats = await asyncio.gather(*(request(r, s) for r, s in zip(regions, sizes, strict=True)))
    rows = {row.room_id: row for row in mm.rooms()}
    assert all(row.players + row.held_seats <= row.capacity for row in rows.values())
    assert sum(row.players for row in rows.values()) == 1000
    assert sum(row.held_seats for row in rows.values()) == sum(sizes) - 1000
    for seat, region in zip(seats, regions, strict=True):
        assert rows[seat.room_id].region == region


def expected_choice(rows: list[RoomInfo], region: str, mode: str, size: int) -> str | None:
    """Brute-force reference of the placement rule over a rooms() listing (oldest first)."""
    fitting = [
        row
        for row in rows
        if (row.region, row.game_mode) == (region, mode)
        and row.players + row.held_seats + size <= row.capacity
    ]
    if not fitting:
        return None
    fullest = max(row.players + row.held_seats for row in fitting)
    return next(row.room_id for row in fitting if row.players + row.held_seats == fullest)


# Few keys and few room indices so operations collide on the same rooms (ties, refills).
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("find"), st.sampled_from(REGIONS[:1]), st.sampled_from("aab"),
                  st.integers(1, 4)),
        st.tuples(st.sampled_from(["join", "release", "release", "close"]), st.integers(0, 3)),
        st.tuples(st.just("wait"), st.sampled_from([1.0, 15.0, 30.0])),
    ),
    max_size=60,
)  # fmt: skip


@settings(max_examples=300)
@given(OPERATIONS)
def test_placement_matches_reference_under_random_operations(operations: list) -> None:
    clock = FakeClock(1000.0)
    mm = Matchmaker(REGIONS, None, clock=clock)
    for op in operations:
        rows = mm.rooms()
        ids = [row.room_id for row in rows]
        if op[0] == "find":
            _, region, mode, size = op
            expected = expected_choice(rows, region, mode, size)
            seat = mm.find_or_create(region, mode, size)
            assert seat.created == (expected is None)
            if expected is not None:
                assert seat.room_id == expected
        elif op[0] == "wait":
            clock.now += op[1]
        elif ids:
            room_id = ids[op[1] % len(ids)]
            with contextlib.suppress(RoomFull, InvalidState):
                {"join": mm.join_room, "release": mm.release, "close": mm.close_room}[op[0]](
                    room_id
                )
        assert all(row.players + row.held_seats <= row.capacity for row in mm.rooms())


def test_restored_players_can_resume_or_expire(clock: FakeClock) -> None:
    mm = Matchmaker(REGIONS, None, clock=clock, resume_seconds=30.0)
    mm.restore_room("Crashed1", "us-east", "coop", 3, resumable_player_ids=["p1", "p2"])
    assert mm.room("Crashed1").players == 3
    assert mm.resume("Crashed1", "p1").room_id == "Crashed1"
    clock.now += 30.0
    assert mm.drain_expired_resumes() == [("Crashed1", "p2")]
    assert mm.room("Crashed1").players == 2
    with pytest.raises(InvalidState):
        mm.restore_room("Crashed2", "us-east", "coop", 1, resumable_player_ids=["a", "b"])


def test_bad_constructor_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        Matchmaker([], None)
    with pytest.raises(ConfigurationError):
        Matchmaker(REGIONS, None, capacity=0)
