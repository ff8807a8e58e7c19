"""MeasuredLink alone: input-to-snapshot latency from seq stamps (a fake client stands in
for GameClient, as this tests one class; the real one is in the smoke and e2e tests)."""

from __future__ import annotations

from astranet.client.connection import received_snapshot
from astranet.net.messages import Snapshot
from astranet.systems.contract import ReceivedSnapshot
from astranet.tools.bot import MAX_PENDING_INPUTS, MeasuredLink


class FakeClient:
    def __init__(self) -> None:
        self.now = 0.0
        self.seq = 0
        self.inbox: list[ReceivedSnapshot] = []
        self.acked: list[int] = []

    def now_ms(self) -> float:
        return self.now

    def send_input(self, blob: bytes) -> int | None:
        self.seq += 1
        return self.seq

    def ack(self, snapshot_id: int) -> None:
        self.acked.append(snapshot_id)

    def drain_snapshots(self) -> list[ReceivedSnapshot]:
        inbox, self.inbox = self.inbox, []
        return inbox

    def arrive(self, snapshot_id: int, last_input_seq: int | None, epoch: int = 1) -> None:
        message = Snapshot(snapshot_id, snapshot_id, None, False, b"", last_input_seq)
        self.inbox.append(received_snapshot(message, self.now, epoch, 7))


def _link() -> tuple[FakeClient, MeasuredLink]:
    client = FakeClient()
    return client, MeasuredLink(client)  # type: ignore[arg-type]


def test_latency_is_arrival_of_the_snapshot_that_applied_the_input_minus_its_send() -> None:
    client, link = _link()
    for t in (0.0, 33.0, 66.0):
        client.now = t
        link.send_input(b"\0\0\0\0")
    client.now = 100.0
    client.arrive(1, last_input_seq=2)
    assert len(link.drain_snapshots()) == 1
    assert list(link.latency_ms) == [100.0, 67.0]
    client.now = 150.0
    client.arrive(2, last_input_seq=2)  # nothing new applied: no sample
    client.arrive(3, last_input_seq=None)
    link.drain_snapshots()
    assert list(link.latency_ms) == [100.0, 67.0]
    client.arrive(4, last_input_seq=3)
    link.drain_snapshots()
    assert list(link.latency_ms) == [100.0, 67.0, 84.0]


def test_a_new_session_forgets_inputs_the_server_dropped() -> None:
    client, link = _link()
    link.send_input(b"")
    client.arrive(1, last_input_seq=None, epoch=1)
    link.drain_snapshots()
    link.send_input(b"")  # seq 2, lost with the old socket
    client.now = 500.0
    client.arrive(1, last_input_seq=5, epoch=2)
    link.drain_snapshots()
    assert list(link.latency_ms) == []


def test_pending_inputs_are_bounded() -> None:
    client, link = _link()
    for _ in range(MAX_PENDING_INPUTS + 50):
        link.send_input(b"")
    client.arrive(1, last_input_seq=client.seq)
    link.drain_snapshots()
    assert len(link.latency_ms) == MAX_PENDING_INPUTS
