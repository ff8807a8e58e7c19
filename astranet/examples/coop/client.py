"""The coop game's visual client: a pygame-ce window on astranet's client netcode.

Run ``python -m astranet.examples.coop.client`` (or ``python -m astranet.examples.coop``) against
``astranet-server --game astranet.examples.coop:game``. The network runs on a background thread
(:class:`~astranet.client.ThreadedClient`); the pygame loop steps a
:class:`~astranet.client.ClientWorld` once per frame on the main thread (esper's worlds are
process-global) and draws its :class:`~astranet.systems.interpolation.RenderView`: the local
player predicted, every other player, drone and projectile interpolated.

Controls: WASD/arrows move, the mouse aims, left button or space fires, F3 or TAB toggles
the debug overlay (RTT, snapshot size and rate, prediction corrections, interpolation buffer
depth and delay, and a bar graph of snapshot inter-arrival times), Esc quits. ``--bot`` plays
by itself (circles the centre, aims at the nearest drone). FIRE is only sent when
``fire_ready`` holds in the predicted store, so the server never refuses it as "fire rate".

Exit status: 0 done (Esc, window closed, ``--duration``); 2 cannot connect; 3 join refused;
4 the session ended (kicked, gave up reconnecting); 5 no window or screenshot failed.
Never a traceback for these.
Limits: one local player; ``MAX_TIMING_SAMPLES`` snapshot arrivals kept for the overlay.
Drawing is one ``pygame.draw`` call per entity over numpy-computed screen coordinates
(600 drones is well inside a 60 fps frame). Benchmark: none; the netcode under it is measured
by benchmarks/netcode_feel.py. Docs: docs/coop.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from astranet.client import ClientOptions, ClientWorld, ThreadedClient
from astranet.client.cli import EXIT_CONNECT, EXIT_JOIN, EXIT_OK, EXIT_SESSION, run_main
from astranet.client.events import ClientEvent, EventKind, region_from_env
from astranet.client.link import ForwardingLink
from astranet.errors import ConnectionClosed, InvalidState, ProtocolError
from astranet.examples.coop import (
    ARENA,
    DRONE,
    PLAYER,
    PROJECTILE,
    TEAM,
    encode_input,
    fire_ready,
    game,
)
from astranet.examples.coop.sim import nearest
from astranet.systems.contract import ReceivedSnapshot
from astranet.systems.interpolation import RenderView

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # keep stdout for our own lines
import pygame  # after the environment variable above, which it reads at import

__all__ = ["BotPilot", "HumanPilot", "MeteredLink", "Pilot", "Renderer", "main", "run", "to_screen"]

EXIT_DISPLAY = 5
PROG = "astranet-coop"

# 4 s of 30 Hz snapshots: a graph wide enough to see a stall, small enough to draw per frame.
MAX_TIMING_SAMPLES = 120
RATE_WINDOW_MS = 1000.0  # snapshot rate and mean size are over the last second

HUD_PX = 40  # score/wave bar at the top
MARGIN_PX = 20
# 120 units across at 5.5 px per unit: the whole window (760 px) fits an 800 px screen with
# its title bar, controls line included.
ARENA_PX = 660
SCALE = ARENA_PX / (2.0 * ARENA)
FOOTER_PX = 40  # two lines under the arena: connection status, then the controls
WINDOW_SIZE = (ARENA_PX + 2 * MARGIN_PX, HUD_PX + MARGIN_PX + ARENA_PX + FOOTER_PX)
PLAYER_RADIUS_PX, DRONE_RADIUS_PX, SHOT_RADIUS_PX = 9, 5, 3
AIM_LINE_PX = 26
PLAYER_MAX_HP = 100.0

BACKGROUND = (18, 20, 28)
ARENA_FLOOR = (28, 32, 44)
ARENA_EDGE = (90, 100, 130)
OWN_COLOUR = (80, 230, 120)
OTHER_COLOUR = (90, 160, 255)
DOWNED_COLOUR = (110, 110, 120)
DRONE_COLOUR = (240, 90, 60)
SHOT_COLOUR = (255, 230, 90)
TEXT_COLOUR = (230, 232, 240)
OVERLAY_BG = (0, 0, 0, 170)


class MeteredLink(ForwardingLink):
    """The ThreadedClient as the ClientWorld's link, recording each snapshot's arrival time
    and payload size for the overlay (bounded by ``MAX_TIMING_SAMPLES``)."""

    def __init__(self, client: ThreadedClient) -> None:
        super().__init__(client)
        self.arrivals_ms: deque[float] = deque(maxlen=MAX_TIMING_SAMPLES)
        self.sizes: deque[int] = deque(maxlen=MAX_TIMING_SAMPLES)

    def drain_snapshots(self) -> list[ReceivedSnapshot]:
        received = super().drain_snapshots()
        for snapshot in received:
            self.arrivals_ms.append(snapshot.arrival_ms)
            self.sizes.append(len(snapshot.payload))
        return received

    def recent(self, now_ms: float) -> tuple[float, float]:
        """(snapshots per second, mean payload bytes) over the last ``RATE_WINDOW_MS``."""
        arrivals = np.fromiter(self.arrivals_ms, np.float64, len(self.arrivals_ms))
        sizes = np.fromiter(self.sizes, np.float64, len(self.sizes))
        recent = arrivals >= now_ms - RATE_WINDOW_MS
        if not recent.any():
            return 0.0, 0.0
        return recent.sum() * 1000.0 / RATE_WINDOW_MS, float(sizes[recent].mean())

    def intervals_ms(self) -> np.ndarray:
        """Inter-arrival times of the kept snapshots, oldest first."""
        return np.diff(np.fromiter(self.arrivals_ms, np.float64, len(self.arrivals_ms)))


def _aim_to_nearest(view: RenderView, origin: np.ndarray, kind: int) -> float | None:
    kinds = view.field("Body.kind")[:, 0]
    target = nearest(view.field("Body.pos")[kinds == kind], origin)
    if target is None:
        return None
    return math.atan2(target[1] - origin[1], target[0] - origin[0])


class Pilot:
    """Builds the input blob each time the prediction system asks (once per server tick)."""

    def __init__(self) -> None:
        self.world: ClientWorld | None = None  # set once the world exists

    def own_position(self) -> np.ndarray | None:
        world = self.world
        if world is None or world.local.net_id is None:
            return None
        row = world.view.row(world.local.net_id)
        return None if row is None else row[world.layout.slices["Body.pos"]]

    def ready_to_fire(self) -> bool:
        local = self.world.local if self.world is not None else None
        if local is None or not local.ready or local.net_id is None:
            return False
        return fire_ready(local.sim.store, local.net_id)

    def __call__(self) -> bytes:
        dx, dy, aim, wants_fire = self.decide()
        return encode_input(dx, dy, aim, wants_fire and self.ready_to_fire())

    def decide(self) -> tuple[float, float, float, bool]:
        raise NotImplementedError


class HumanPilot(Pilot):
    """WASD/arrows, mouse aim (from the own avatar's screen position), left button/space."""

    def __init__(self) -> None:
        super().__init__()
        self.aim = 0.0

    def decide(self) -> tuple[float, float, float, bool]:
        keys = pygame.key.get_pressed()
        dx = float(
            (keys[pygame.K_d] or keys[pygame.K_RIGHT]) - (keys[pygame.K_a] or keys[pygame.K_LEFT])
        )
        dy = float(
            (keys[pygame.K_w] or keys[pygame.K_UP]) - (keys[pygame.K_s] or keys[pygame.K_DOWN])
        )
        own = self.own_position()
        if own is not None:
            mouse_x, mouse_y = pygame.mouse.get_pos()
            own_x, own_y = to_screen(own[None, :])[0]
            if (mouse_x, mouse_y) != (own_x, own_y):
                self.aim = math.atan2(own_y - mouse_y, mouse_x - own_x)  # screen y points down
        fire = bool(pygame.mouse.get_pressed()[0] or keys[pygame.K_SPACE])
        return dx, dy, self.aim, fire


class BotPilot(Pilot):
    """Circles the centre (radius varies with time), aims at the nearest drone, fires."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.inputs = 0
        self.phase = seed * 1.7

    def decide(self) -> tuple[float, float, float, bool]:
        self.inputs += 1
        own = self.own_position()
        if own is None or self.world is None:
            return 0.0, 0.0, 0.0, False
        # Steer toward a point moving on a circle: the bot roams the middle of the arena.
        angle = self.phase + self.inputs / 90.0
        radius = ARENA * (0.3 + 0.2 * math.sin(self.inputs / 211.0))
        goal = np.array([math.cos(angle), math.sin(angle)]) * radius
        dx, dy = goal - own
        aim = _aim_to_nearest(self.world.view, own, DRONE)
        return float(dx), float(dy), 0.0 if aim is None else aim, aim is not None


def to_screen(pos: np.ndarray) -> np.ndarray:
    """World (n, 2) positions -> integer pixel coordinates (+y is up on screen)."""
    screen = np.empty(pos.shape, np.int64)
    screen[:, 0] = MARGIN_PX + (pos[:, 0] + ARENA) * SCALE
    screen[:, 1] = HUD_PX + MARGIN_PX + (ARENA - pos[:, 1]) * SCALE
    return screen


class Renderer:
    """Draws one RenderView and the HUD/overlay onto the window surface."""

    def __init__(self, screen: pygame.Surface) -> None:
        self.screen = screen
        self.font = pygame.font.Font(None, 22)
        self.big_font = pygame.font.Font(None, 30)
        self.arena_rect = pygame.Rect(MARGIN_PX, HUD_PX + MARGIN_PX, ARENA_PX, ARENA_PX)
        self.overlay = pygame.Surface((330, 270), pygame.SRCALPHA)  # reused every frame
        self.show_overlay = True
        self.status_line = ""
        self.controls_hint = self.font.render(  # rendered once: it never changes
            "WASD/arrows move   mouse aim   click/space fire   F3/TAB overlay   Esc quit",
            True,
            (140, 145, 160),
        )

    def draw(self, view: RenderView, world: ClientWorld, link: MeteredLink, fps: float) -> None:
        screen = self.screen
        screen.fill(BACKGROUND)
        pygame.draw.rect(screen, ARENA_FLOOR, self.arena_rect)
        pygame.draw.rect(screen, ARENA_EDGE, self.arena_rect, 2)
        kinds = view.field("Body.kind")[:, 0]
        screen_pos = to_screen(view.field("Body.pos")).tolist()
        headings = view.field("Body.heading")[:, 0]
        hps = view.field("Health.hp")[:, 0]
        for index in np.flatnonzero(kinds == PROJECTILE).tolist():
            pygame.draw.circle(screen, SHOT_COLOUR, screen_pos[index], SHOT_RADIUS_PX)
        for index in np.flatnonzero(kinds == DRONE).tolist():
            pygame.draw.circle(screen, DRONE_COLOUR, screen_pos[index], DRONE_RADIUS_PX)
        own_id = view.local_net_id
        own_hp = None
        for index in np.flatnonzero(kinds == PLAYER).tolist():
            is_own = own_id is not None and int(view.net_ids[index]) == own_id
            own_hp = hps[index] if is_own else own_hp
            self._draw_player(screen_pos[index], float(headings[index]), float(hps[index]), is_own)
        team = np.flatnonzero(kinds == TEAM)
        score = int(view.field("Team.score")[team[0], 0]) if team.size else 0
        wave = int(view.field("Team.wave")[team[0], 0]) if team.size else 0
        counts = np.bincount(kinds.astype(np.int64), minlength=4) if kinds.size else [0] * 4
        self._draw_hud(score, wave, int(counts[PLAYER]), int(counts[DRONE]), own_hp)
        if self.show_overlay:
            self._draw_overlay(view, world, link, fps)

    def _draw_player(self, at: list[int], heading: float, hp: float, is_own: bool) -> None:
        colour = DOWNED_COLOUR if hp <= 0 else OWN_COLOUR if is_own else OTHER_COLOUR
        x, y = at
        tip = (x + AIM_LINE_PX * math.cos(heading), y - AIM_LINE_PX * math.sin(heading))
        pygame.draw.line(self.screen, colour, at, tip, 2)
        pygame.draw.circle(self.screen, colour, at, PLAYER_RADIUS_PX)
        if is_own:
            pygame.draw.circle(self.screen, TEXT_COLOUR, at, PLAYER_RADIUS_PX + 3, 1)
        bar = pygame.Rect(x - 14, y + PLAYER_RADIUS_PX + 5, 28, 4)  # under the avatar
        pygame.draw.rect(self.screen, (70, 20, 20), bar)
        bar.width = round(28 * max(0.0, min(1.0, hp / PLAYER_MAX_HP)))
        pygame.draw.rect(self.screen, (60, 220, 90), bar)

    def _draw_hud(
        self, score: int, wave: int, players: int, drones: int, own_hp: float | None
    ) -> None:
        hp_text = "-" if own_hp is None else f"{own_hp:.0f}"
        text = (
            f"SCORE {score}    WAVE {wave}    players {players}    drones {drones}    hp {hp_text}"
        )
        self.screen.blit(self.big_font.render(text, True, TEXT_COLOUR), (MARGIN_PX, 12))
        footer_y = self.arena_rect.bottom + 4
        self.screen.blit(self.controls_hint, (MARGIN_PX, footer_y + 18))
        if self.status_line:
            line = self.font.render(self.status_line, True, (255, 200, 120))
            self.screen.blit(line, (MARGIN_PX, footer_y))

    def _draw_overlay(
        self, view: RenderView, world: ClientWorld, link: MeteredLink, fps: float
    ) -> None:
        now_ms = link.now_ms()
        clock = link.clock_estimate(now_ms)
        rate_hz, size_b = link.recent(now_ms)
        recon = world.reconciliation.stats
        interpolation = world.interpolation
        rtt = "n/a" if clock.rtt_ms is None else f"{clock.rtt_ms:.1f} ms"
        jitter = "" if clock.rttvar_ms is None else f" (var {clock.rttvar_ms:.1f})"
        # Depth that matters: how far the newest buffered snapshot is ahead of render time
        # (it shrinks toward 0 before a starvation).
        newest_ms = interpolation.buffer.newest_time_ms
        ahead = (
            "n/a"
            if newest_ms is None or view.render_time_ms is None
            else f"{newest_ms - view.render_time_ms:.0f} ms"
        )
        lines = [
            f"RTT {rtt}{jitter}    {fps:.0f} fps",
            f"snapshots {rate_hz:.0f}/s, {size_b:.0f} B avg",
            f"predictions {recon.exact}/{recon.compared} exact",
            f"corrections {recon.rewinds}  max error {recon.max_error:.3g}",
            f"interp buffer {len(interpolation.buffer)} snaps, {ahead} ahead",
            f"interp delay {interpolation.delay.delay_ms:.0f} ms,"
            f" jitter {interpolation.delay.jitter_ms:.1f} ms",
            f"status {view.status.name.lower()}, starvations {interpolation.starvations}",
            "snapshot inter-arrival (ms):",
        ]
        panel = self.overlay
        panel.fill(OVERLAY_BG)
        for number, line in enumerate(lines):
            panel.blit(self.font.render(line, True, TEXT_COLOUR), (8, 6 + 20 * number))
        self._draw_timing_graph(panel, link.intervals_ms(), pygame.Rect(8, 172, 314, 90))
        self.screen.blit(panel, (MARGIN_PX + 6, HUD_PX + MARGIN_PX + 6))

    def _draw_timing_graph(
        self, panel: pygame.Surface, intervals_ms: np.ndarray, area: pygame.Rect
    ) -> None:
        """One bar per snapshot; the line marks the nominal 33 ms, bars above 2x are red."""
        full_scale_ms = 100.0
        pygame.draw.rect(panel, (40, 40, 50, 220), area)
        nominal_y = area.bottom - round(area.height * (1000.0 / 30.0) / full_scale_ms)
        pygame.draw.line(panel, (120, 120, 140), (area.left, nominal_y), (area.right, nominal_y))
        if intervals_ms.size == 0:
            return
        heights = np.clip(np.rint(intervals_ms / full_scale_ms * area.height), 1, area.height)
        bar_px = max(1, area.width // MAX_TIMING_SAMPLES)
        late = intervals_ms > 2.0 * 1000.0 / 30.0
        first_x = area.right - bar_px * intervals_ms.size
        for number, (height, is_late) in enumerate(
            zip(heights.astype(int).tolist(), late.tolist(), strict=True)
        ):
            colour = (240, 90, 70) if is_late else (110, 200, 255)
            panel.fill(
                colour,
                (first_x + number * bar_px, area.bottom - height, max(1, bar_px - 1), height),
            )
        label = self.font.render(f"{full_scale_ms:.0f}", True, (170, 170, 180))
        panel.blit(label, (area.right - label.get_width() - 2, area.top + 1))


def _describe(event: ClientEvent) -> str:
    if event.kind is EventKind.JOINED:
        return f"joined room {event.room_id} as entity {event.entity}"
    if event.kind is EventKind.RECONNECTING:
        return f"reconnecting: attempt {event.attempt} ({event.detail})"
    if event.kind is EventKind.RECONNECTED:
        return f"reconnected after {event.downtime_s:.2f} s"
    return f"{event.kind.value} {event.detail}".rstrip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("AW_WS_URL", "ws://127.0.0.1:8788"))
    parser.add_argument("--region", default=region_from_env())
    parser.add_argument("--room", default=None, help="JoinRoom this room id")
    parser.add_argument("--bot", action="store_true", help="play with bot input")
    parser.add_argument("--seed", type=int, default=0, help="bot seed")
    parser.add_argument("--duration", type=float, default=None, help="quit after S seconds")
    parser.add_argument("--screenshot", default=None, metavar="PATH", help="save a PNG frame")
    parser.add_argument(
        "--screenshot-after",
        type=float,
        default=2.5,
        metavar="S",
        help="seconds before the screenshot (default 2.5; taken at exit if --duration ends first)",
    )
    parser.add_argument("--fps", type=float, default=60.0, help="frame rate cap")
    parser.add_argument("--no-overlay", action="store_true", help="start with the overlay off")
    return parser


def display_problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why no window can open here, or None. SDL would otherwise fall back to an invisible
    offscreen window and "play" unseen; an explicit SDL_VIDEODRIVER (tests use ``dummy``)
    is the caller's choice and always allowed."""
    if environ.get("SDL_VIDEODRIVER"):
        return None
    if sys.platform.startswith("linux") and not (
        environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")
    ):
        return (
            "no display (neither DISPLAY nor WAYLAND_DISPLAY is set); for a headless bot use"
            " astranet-client, or SDL_VIDEODRIVER=dummy with --bot"
        )
    return None


def run(args: argparse.Namespace) -> int:
    """Connect, open the window and play; returns the exit status."""
    problem = display_problem()
    if problem is not None:  # before connecting: nothing to undo
        print(f"{PROG}: cannot open a window: {problem}", file=sys.stderr)
        return EXIT_DISPLAY
    options = ClientOptions(
        url=args.url, region=args.region, room_id=args.room, schema=game.schema.fingerprint
    )
    client = ThreadedClient(options)
    try:
        accepted = client.start()
    except ProtocolError as exc:
        print(f"{PROG}: join refused: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_JOIN
    except (ConnectionClosed, InvalidState) as exc:
        reason = exc.reason if isinstance(exc, ConnectionClosed) else str(exc)
        print(f"{PROG}: {reason}", file=sys.stderr)
        return EXIT_CONNECT
    link = MeteredLink(client)
    pilot: Pilot = BotPilot(args.seed) if args.bot else HumanPilot()
    world = ClientWorld(game, link, pilot, tick_hz=accepted.tick_hz)
    pilot.world = world
    try:
        # Only what we use: pygame.init() would also open the audio device (ALSA noise).
        pygame.display.init()
        pygame.font.init()
        screen = pygame.display.set_mode(WINDOW_SIZE)
        pygame.display.set_caption(f"astranet coop - room {accepted.room_id}")
    except pygame.error as exc:
        print(f"{PROG}: cannot open a window: {exc}", file=sys.stderr)
        client.stop()
        world.close()
        return EXIT_DISPLAY
    try:
        return _loop(args, client, link, world, Renderer(screen))
    finally:
        client.stop()
        world.close()
        pygame.quit()


def _loop(
    args: argparse.Namespace,
    client: ThreadedClient,
    link: MeteredLink,
    world: ClientWorld,
    renderer: Renderer,
) -> int:
    renderer.show_overlay = not args.no_overlay
    frame_clock = pygame.time.Clock()
    started = time.monotonic()
    screenshot_due = args.screenshot is not None
    while True:
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                return _finish(args, renderer, screenshot_due, EXIT_OK)
            if event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE:
                return _finish(args, renderer, screenshot_due, EXIT_OK)
            if event.type == pygame.KEYDOWN and event.key in (pygame.K_F3, pygame.K_TAB):
                renderer.show_overlay = not renderer.show_overlay
        view = world.step()
        for client_event in client.drain_events():
            renderer.status_line = _describe(client_event)
            print(renderer.status_line, flush=True)
        if client.error is not None:
            print(f"{PROG}: session ended: {client.error}", file=sys.stderr)
            return EXIT_SESSION
        renderer.draw(view, world, link, frame_clock.get_fps())
        pygame.display.flip()
        elapsed_s = time.monotonic() - started
        if screenshot_due and elapsed_s >= args.screenshot_after:
            if not _save(renderer.screen, args.screenshot):
                return EXIT_DISPLAY
            screenshot_due = False
        if args.duration is not None and elapsed_s >= args.duration:
            return _finish(args, renderer, screenshot_due, EXIT_OK)
        frame_clock.tick(args.fps)  # frame pacing, like vsync


def _finish(args: argparse.Namespace, renderer: Renderer, screenshot_due: bool, status: int) -> int:
    """Leave with ``status``, saving the last frame if the screenshot is still due."""
    if screenshot_due and not _save(renderer.screen, args.screenshot):
        return EXIT_DISPLAY
    return status


def _save(screen: pygame.Surface, path: str) -> bool:
    try:
        pygame.image.save(screen, path)
    except (pygame.error, OSError) as exc:
        print(f"{PROG}: cannot save screenshot {path}: {exc}", file=sys.stderr)
        return False
    print(f"screenshot {path}", flush=True)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_main(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
