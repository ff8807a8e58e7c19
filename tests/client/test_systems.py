"""Unit tests of the client systems, each driven by hand through a stub ClientLink.

The stub is the only double here: it stands for the network shell (tested for real in the
end-to-end tests); the systems, replica, codec, stores and game are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import esper
import numpy as np
import pytest

from astranet.client import ClientWorld
from astranet.client.connection import received_snapshot
from astranet.ecs import ColumnStore
from astranet.examples.dots import Dots, encode_input, move_avatar
from astranet.net.messages import Snapshot
from astranet.replication import capture, encode_payload
from astranet.replication.interpolation import InterpolationStatus
from astranet.systems.contract import ClientFrame, ClockEstimate, ReceivedSnapshot
from astranet.systems.input_ingestion import MAX_QUEUED_INPUTS
from astranet.systems.prediction import INPUT_PIPELINE_SLACK, MAX_INPUT_LEAD

TICK_MS = 1000 / 30
GAME = Dots()


class StubLink:
    """Records what the systems send; hands over what the test queued."""

    def __init__(self) -> None:
        self.now = 0.0
        self.estimate = ClockEstimate(None, None, None, 30)
        self.inbox: list[ReceivedSnapshot] = []
        self.acks: list[int] = []
        self.sent: list[bytes] = []
        self.online = True

    def now_ms(self) -> float:
        return self.now

    def clock_estimate(self, now_ms: float) -> ClockEstimate:
        return self.estimate

    def drain_snapshots(self) -> list[ReceivedSnapshot]:
        inbox, self.inbox = self.inbox, []
        return inbox

    def ack(self, snapshot_id: int) -> None:
        self.acks.append(snapshot_id)

    def send_input(self, blob: bytes) -> int | None:
        if not self.online:
            return None
        self.sent.append(blob)
        return len(self.sent)


class Server:
    """A server-side store with one player (id 1) and one remote dot (id 2)."""

    def __init__(self) -> None:
        self.store = ColumnStore(Dots.schema)
        self.store.spawn(2, Body__pos=np.array([[0.0, 0.0], [10.0, 0.0]]))
        self.tick = 0
        self.applied: int | None = None

    def apply(self, blob: bytes) -> None:
        move_avatar(self.store, 1, GAME.decode_input(blob), 1 / 30)
        self.applied = (self.applied or 0) + 1

    def snapshot(self, epoch: int = 1, arrival_ms: float = 0.0) -> ReceivedSnapshot:
        self.tick += 1
        payload, compressed = encode_payload(Dots.schema, capture(self.store, self.tick, self.tick))
        message = Snapshot(self.tick, self.tick, None, compressed, payload, self.applied)
        return received_snapshot(message, arrival_ms, epoch, 1)


@pytest.fixture
def world() -> Iterator[tuple[ClientWorld, StubLink, Server]]:
    link, server = StubLink(), Server()
    client_world = ClientWorld(GAME, link, lambda: encode_input(1, 0), tick_hz=30)
    yield client_world, link, server
    client_world.close()
    esper.switch_world("default")


def test_clock_sync_fills_the_frame_from_the_estimate(world):
    client_world, link, _ = world
    link.estimate = ClockEstimate(100.0, 40.0, 5.0, 30)
    frame = ClientFrame(0.0, 0.0)
    client_world.clock_sync.process(frame)
    assert frame.tick_ms == pytest.approx(TICK_MS)
    assert frame.arrival_time_ms == pytest.approx(100 * TICK_MS - 20.0)
    assert (frame.rtt_ms, frame.rttvar_ms) == (40.0, 5.0)


def test_receive_applies_acks_and_prediction_waits_for_the_avatar(world):
    client_world, link, server = world
    client_world.step(0.0, 0.1)
    assert link.sent == []  # no avatar yet: nothing predicted, nothing sent
    link.inbox.append(server.snapshot())
    client_world.step(10.0, 0.1)
    assert link.acks == [1]
    assert client_world.local.ready and client_world.local.net_id == 1
    assert len(link.sent) == 3  # 0.1 s of frame time = 3 ticks, the credit cap
    assert client_world.local.state()[0] == pytest.approx(1.0, abs=1 / 512)


def test_long_frames_send_at_most_three_inputs(world):
    client_world, link, server = world
    link.inbox.append(server.snapshot())
    client_world.step(0.0, 0.0)
    client_world.step(1000.0, 1.0)
    assert len(link.sent) == 3
    assert client_world.prediction.steps_dropped == 27


def test_a_server_far_behind_holds_inputs_instead_of_overfilling_its_queue(world):
    client_world, link, server = world
    link.estimate = ClockEstimate(None, 0.0, 0.0, 30)  # loopback: no RTT's worth in flight
    link.inbox.append(server.snapshot())
    client_world.step(0.0, 0.0)
    now = 0.0
    for _ in range(5):  # 15 steps due; the server applies none of them
        now += 100.0
        client_world.step(now, 0.1)
    limit = INPUT_PIPELINE_SLACK + MAX_INPUT_LEAD
    assert len(link.sent) == limit <= MAX_QUEUED_INPUTS
    assert client_world.prediction.inputs_held == 15 - limit
    # The server catches up: sending resumes, and the prediction stayed exact.
    for blob in link.sent:
        server.apply(blob)
    link.inbox.append(server.snapshot())
    client_world.step(now + 100.0, 0.1)
    assert len(link.sent) == limit + 3
    stats = client_world.reconciliation.stats
    assert (stats.compared, stats.exact, stats.rewinds) == (1, 1, 0)


def test_reconcile_exact_then_rewind_on_server_disagreement(world):
    client_world, link, server = world
    link.inbox.append(server.snapshot())
    client_world.step(0.0, 0.0)
    client_world.step(100.0, 0.1)  # predicts 3 inputs
    for blob in link.sent[:2]:
        server.apply(blob)
    link.inbox.append(server.snapshot())
    client_world.step(133.0, 0.0)
    stats = client_world.reconciliation.stats
    assert (stats.compared, stats.exact, stats.rewinds) == (1, 1, 0)
    # The server teleports the avatar: the next comparison fails and the client rewinds.
    server.apply(link.sent[2])
    server.store["Body.pos"][0] = (-5.0, 0.0)
    link.inbox.append(server.snapshot())
    client_world.step(166.0, 0.0)
    assert stats.rewinds == 1 and stats.max_error > 0
    assert client_world.local.state()[0] == -5.0
    shown = client_world.view.row(1)
    assert shown is not None and shown[0] > -5.0  # smoothing: still gliding over


def test_interpolation_draws_remotes_between_snapshots_and_counts_starvation(world):
    client_world, link, server = world
    for k in range(3):
        server.store["Body.pos"][1] = (10.0 + k, 0.0)
        link.inbox.append(server.snapshot(arrival_ms=k * TICK_MS))
    link.estimate = ClockEstimate(4.0, 0.0, 0.0, 30)  # tick 4 arriving now, 0 ms RTT
    client_world.step(100.0, 0.0)
    view = client_world.view
    assert view.status is InterpolationStatus.INTERPOLATING
    remote = view.row(2)
    assert remote is not None and remote[0] == pytest.approx(11.0)  # 2 ticks behind: tick 2
    link.estimate = ClockEstimate(10.0, 0.0, 0.0, 30)  # nothing new for 7 ticks
    client_world.step(333.0, 0.0)
    assert client_world.interpolation.starvations == 1
    assert client_world.view.status is InterpolationStatus.HOLDING_NEWEST


def test_a_new_epoch_restarts_prediction_from_the_full_snapshot(world):
    client_world, link, server = world
    link.inbox.append(server.snapshot())
    client_world.step(0.0, 0.0)
    client_world.step(100.0, 0.1)
    assert len(client_world.local.history) == 3
    link.inbox.append(server.snapshot(epoch=2))  # resumed: the server dropped those inputs
    client_world.step(133.0, 0.0)
    assert len(client_world.local.history) == 0
    assert client_world.local.state()[0] == 0.0  # adopted the server's state
    link.online = False
    client_world.step(300.0, 0.2)
    assert len(client_world.local.history) == 0  # offline: nothing predicted
