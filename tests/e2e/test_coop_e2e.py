"""End to end: the co-op game, 4 bots, 100 ms RTT, 10 s of one room's play.

An in-process :class:`GameServer` with the coop game (plus a test-only recorder of the team
score at every tick) sits behind a :class:`LinkConditioner` that delays each direction by
50 ms. Four :class:`astranet.tools.bot.Bot` s -- real ``GameClient`` + ``ClientWorld`` with
prediction, steered by seeded personalities that move and shoot -- join one room (the first
with FindOrCreate party_size 4, the others JoinRoom) and play for 10 s. One run, several
assertions (each a test sharing the run, so the suite pays for the 10 s once):

* every player saw every other player move, in its interpolated render view;
* the team score each client decoded from its newest snapshot equals the server's score at
  that snapshot's tick (like for like), and the team scored;
* no kicks and no refused inputs (``/metrics``);
* prediction was exact at every reconciliation: the players' movement is unobstructed (coop
  players only collide with drones, which the bots kill first; the test checks that no player
  was hit, so a failure says which precondition broke).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import esper
import numpy as np
import pytest

from astranet.client import ClientOptions
from astranet.examples.coop import PLAYER, TEAM, Coop
from astranet.examples.coop import game as coop_game
from astranet.game import SimContext
from astranet.systems.stages import Stage, add_system
from astranet.testing import LinkProfile, TestServer
from astranet.tools.bot import Bot
from astranet.tools.serverproc import MetricsSample, parse_metrics

ONE_WAY_MS = 50.0
PLAY_S = 10.0
FPS = 30.0
SEATS = 4
MOVED_UNITS = 2.0  # a player "moved" when another client drew it this far from where it began
MAX_RECORDED_TICKS = 4096  # ~2 min of ticks: the recorder's bound


class ScoreRecorder(esper.Processor):
    """Server-side, after replication: the team score and wave at every tick, and whether any
    player was ever below full health (a drone hit it: its movement was obstructed)."""

    def __init__(self, ticks: dict[int, tuple[int, int]]) -> None:
        self.ticks = ticks
        self.players_hit = 0

    def process(self, sim: SimContext) -> None:
        store = sim.store
        kind = store["Body.kind"]
        team = np.flatnonzero(kind == TEAM)[0]
        self.ticks[sim.tick] = (int(store["Team.score"][team]), int(store["Team.wave"][team]))
        if len(self.ticks) > MAX_RECORDED_TICKS:
            del self.ticks[min(self.ticks)]
        self.players_hit += int((store["Health.hp"][kind == PLAYER] < 100).any())


class RecordingCoop(Coop):
    """The coop game plus a :class:`ScoreRecorder` in every room (one room in this test)."""

    def __init__(self) -> None:
        self.score_at_tick: dict[int, tuple[int, int]] = {}
        self.recorder = ScoreRecorder(self.score_at_tick)

    def setup(self, sim: SimContext) -> None:
        super().setup(sim)
        add_system(self.recorder, Stage.REPLICATE, 99)


@dataclass
class Seen:
    """What one client saw of the others, from its render view."""

    first: dict[int, np.ndarray] = field(default_factory=dict)
    farthest: dict[int, float] = field(default_factory=dict)

    def observe(
        self, net_ids: np.ndarray, pos: np.ndarray, kind: np.ndarray, me: int | None
    ) -> None:
        players = (kind == PLAYER) & (net_ids != (me if me is not None else -1))
        for net_id, xy in zip(net_ids[players].tolist(), pos[players], strict=True):
            start = self.first.setdefault(net_id, xy.copy())
            moved = float(np.hypot(*(xy - start)))
            self.farthest[net_id] = max(self.farthest.get(net_id, 0.0), moved)


@dataclass
class Outcome:
    bots: list[Bot]
    seen: list[Seen]
    client_team: list[tuple[int, int, int]]  # (snapshot tick, score, wave) per client
    game: RecordingCoop
    metrics: MetricsSample


def _team_of(bot: Bot) -> tuple[int, int, int]:
    """(tick, score, wave) of the newest snapshot the client applied."""
    assert bot.world is not None
    replica = bot.world.replica
    assert replica.latest is not None
    store = replica.store
    team = np.flatnonzero(store["Body.kind"] == TEAM)[0]
    return (replica.latest.tick, int(store["Team.score"][team]), int(store["Team.wave"][team]))


async def _play() -> Outcome:
    game = RecordingCoop()
    test = await TestServer(game, link=LinkProfile(latency_ms=ONE_WAY_MS), link_seed=3).start()
    options = ClientOptions(url=test.url, party_size=SEATS, seed=1)
    bots: list[Bot] = []
    try:
        leader = Bot(0, 0, options, coop_game, seed=100)
        bots.append(leader)
        room_id = await leader.join()
        followers = [
            Bot(
                seat,
                0,
                replace(options, party_size=1, room_id=room_id, party_token=leader.party_token),
                coop_game,
                seed=100 + seat,
            )
            for seat in range(1, SEATS)
        ]
        bots.extend(followers)
        await asyncio.gather(*(bot.join() for bot in followers))
        seen = [Seen() for _ in bots]
        loop = asyncio.get_running_loop()
        end = loop.time() + PLAY_S
        while loop.time() < end:
            for bot, sight in zip(bots, seen, strict=True):
                bot.step()
                view = bot.world.view if bot.world is not None else None
                if view is not None and view.net_ids.size:
                    sight.observe(
                        view.net_ids,
                        view.field("Body.pos"),
                        view.field("Body.kind")[:, 0],
                        view.local_net_id,
                    )
            await asyncio.sleep(1.0 / FPS)  # frame pacing, as a renderer's vsync
        client_team = [_team_of(bot) for bot in bots]
        metrics = parse_metrics(await test.metrics())  # fetched off this loop
        return Outcome(bots, seen, client_team, game, metrics)
    finally:
        for bot in bots:
            await bot.close()
        await test.close()
        esper.switch_world("default")


@pytest.fixture(scope="module")
def outcome() -> Iterator[Outcome]:
    yield asyncio.run(_play())


@pytest.mark.timeout(60)
def test_all_four_bots_share_one_room(outcome: Outcome) -> None:
    rooms = {bot.room_id for bot in outcome.bots}
    assert len(rooms) == 1 and None not in rooms
    assert all(bot.client.error is None for bot in outcome.bots)
    assert all(bot.disconnects == 0 for bot in outcome.bots)


@pytest.mark.timeout(60)
def test_every_player_saw_every_other_player_move(outcome: Outcome) -> None:
    avatars = {bot.world.local.net_id for bot in outcome.bots if bot.world is not None}
    assert len(avatars) == SEATS
    for bot, sight in zip(outcome.bots, outcome.seen, strict=True):
        assert bot.world is not None
        others = avatars - {bot.world.local.net_id}
        assert set(sight.farthest) >= others, f"bot {bot.index} never drew {others}"
        for net_id in others:
            assert sight.farthest[net_id] >= MOVED_UNITS, (
                f"bot {bot.index} saw player {net_id} move only {sight.farthest[net_id]:.2f}"
            )


@pytest.mark.timeout(60)
def test_team_score_agrees_with_the_server_at_the_same_tick(outcome: Outcome) -> None:
    recorded = outcome.game.score_at_tick
    for tick, score, wave in outcome.client_team:
        assert tick in recorded, f"server has no record of tick {tick}"
        assert (score, wave) == recorded[tick]
    scores = [score for _, score, _ in outcome.client_team]
    assert max(scores) > 0, "the bots shot no drone in 10 s"
    assert min(wave for _, _, wave in outcome.client_team) >= 1


@pytest.mark.timeout(60)
def test_no_kicks_and_no_refused_inputs(outcome: Outcome) -> None:
    assert outcome.metrics.kicks_total == 0, outcome.metrics.kicks
    assert outcome.metrics.input_violations == 0  # FIRE only when fire_ready
    assert sum(bot.brain.shots for bot in outcome.bots) > 0


@pytest.mark.timeout(60)
def test_prediction_is_exact_for_unobstructed_movement(outcome: Outcome) -> None:
    assert outcome.game.recorder.players_hit == 0, "a drone hit a player: movement obstructed"
    for bot in outcome.bots:
        assert bot.world is not None
        stats = bot.world.reconciliation.stats
        assert stats.compared > 200  # ~30 snapshots/s for 10 s, each compared
        assert stats.exact == stats.compared
        assert stats.max_error == 0.0
        assert stats.rewinds == 0
