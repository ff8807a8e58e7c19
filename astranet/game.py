"""What a game gives astranet: the small interface the server (and the client's prediction) call.

A game is one object, usually a :class:`Game` subclass instance, loaded by
``astranet-server --game MODULE:ATTR``::

    class Dots(Game):
        name = "dots"
        schema = Schema(Body)                       # replicated components (astranet.ecs)

        def setup(self, sim):                       # once per room, inside the room's world
            add_system(Bounce(), Stage.SIMULATE)
        def spawn_player(self, sim, player_id):     # -> the avatar's net id
            return int(sim.store.spawn(1, **{"Body.pos": (0, 0)})[0])
        def decode_input(self, blob):               # bytes -> command, or raise InputError
            ...
        def apply_input(self, sim, net_id, command):   # one input = one fixed step of movement
            ...

Rules the server relies on:

* State that replicates lives in ``sim.store`` (a :class:`~astranet.ecs.ColumnStore`); systems
  read and write whole columns. esper entities carry identity and tags.
* ``apply_input`` moves the player by exactly one input's worth (``sim.dt_s``), and the client
  calls the *same function* to predict; that is what makes prediction exact. Keep it a pure
  function of ``(store state, command)``.
* ``decode_input`` raises :class:`InputError` for a blob it cannot read. The server then
  applies :meth:`Game.empty_input` instead (WIRE rule 3: the seq still counts as applied), and
  counts it in ``/metrics``; the client gets no error and no strike. Any other exception is
  treated the same (and logged once per room: raise InputError instead).
* When the game's code raises, only what caused it pays: ``setup``/``spawn_player`` raising
  refuses that join (``game_error``; no room, seat or avatar is kept), ``check_input`` or
  ``apply_input`` raising kicks that player, ``despawn_player`` raising falls back to the
  default despawn. Only an exception in one of the game's systems closes the room (its players
  get ``room_failed``), and the other rooms go on.
* ``check_input`` is the movement-sanity hook: return a short reason string for an impossible
  command (too fast, firing too often...). The server counts and logs it, applies the empty
  input instead, and kicks a player whose violations keep coming (``astranet.systems``).

Everything here runs inside the room's esper world (the server has called
``esper.switch_world``) and synchronously within one tick: never await, never block.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import esper

from astranet.ecs import ColumnStore, NetEntity, Schema
from astranet.errors import AstranetError, ConfigurationError, InvalidState

__all__ = ["Game", "InputError", "SimContext", "load_game"]


class InputError(AstranetError, ValueError):
    """An input blob the game cannot decode."""


@dataclass(slots=True)
class SimContext:
    """What every simulation call receives: the room's columns and the current step.

    esper processors get it as their only argument (``process(self, sim)``); the server builds
    one per room, the client one for its predicted copy of the world.
    """

    store: ColumnStore
    tick: int = 0
    dt_s: float = 1 / 30
    room_id: str = ""
    #: True on the server; the client's prediction runs the same code with False, so a game
    #: can skip server-only effects (spawning enemies, scoring) while predicting.
    authoritative: bool = True
    #: While ``apply_input`` runs: the server tick (fractional) the input's client was
    #: rendering remote entities at, from the frame's optional ``view_tick`` (None: the client
    #: did not say, or outside ``apply_input``). Pass it to :meth:`rewind`.
    view_tick: float | None = None
    #: The room's :class:`~astranet.replication.rewind.Rewinder` (server only; None on clients).
    rewinder: Any = None
    #: Reliable game events: ``sim.events.emit("hit", data, to=player_id)``
    #: (:class:`~astranet.systems.events.EventRouter`; server only, None on clients).
    events: Any = None

    def rewind(self, view_tick: float | None) -> Any:
        """Lag compensation: the replicated state as a client saw it at ``view_tick``.

        Returns a :class:`~astranet.replication.rewind.RewoundView` (``.net_ids``,
        ``.field("Body.pos")``), interpolated exactly as the client interpolates; views older
        than ``Game.max_rewind_ms`` are clamped to it, None means the newest snapshot. Only on
        the server (``authoritative``); raises InvalidState elsewhere.
        """
        if self.rewinder is None:
            raise InvalidState("sim.rewind() needs the server's snapshot history")
        return self.rewinder.rewind(view_tick)


class Game:
    """Base class with sensible defaults; override what your game needs."""

    #: Short name used in logs.
    name: ClassVar[str] = "game"
    #: The replicated components.
    schema: Schema
    #: Lag-compensation cap: how far behind the newest snapshot ``sim.rewind`` may look.
    max_rewind_ms: ClassVar[float] = 500.0
    #: Interest management: bytes per second each client's snapshots may use (the whole
    #: Snapshot message); None = no budget. See :meth:`relevance`.
    snapshot_budget_bytes_per_s: ClassVar[int | None] = None

    def setup(self, sim: SimContext) -> None:
        """Create the room's initial entities and add simulation processors (once per room)."""

    def spawn_player(self, sim: SimContext, player_id: str) -> int:
        """Create the avatar of ``player_id``; return its net id."""
        raise NotImplementedError

    def despawn_player(self, sim: SimContext, player_id: str, net_id: int) -> None:
        """Remove the avatar (after Leave, or when a held seat expires)."""
        for entity, tag in list(esper.get_component(NetEntity)):
            if tag.net_id == net_id:
                esper.delete_entity(entity, immediate=True)
        if bool(sim.store.contains([net_id])[0]):
            sim.store.despawn([net_id])

    def decode_input(self, blob: bytes) -> Any:
        """Turn an input blob into a command; raise :class:`InputError` if it is unreadable."""
        raise NotImplementedError

    def empty_input(self) -> Any:
        """The command applied for an undecodable or refused blob (e.g. "stand still")."""
        return None

    def apply_input(self, sim: SimContext, net_id: int, command: Any) -> None:
        """Apply one player command: exactly one fixed step, shared with client prediction."""

    def check_input(self, sim: SimContext, net_id: int, command: Any) -> str | None:
        """Movement sanity: return why ``command`` is impossible, or None when it is fine."""
        return None

    def on_command(
        self, sim: SimContext, player_id: str, net_id: int, command_type: str, data: bytes
    ) -> str | None:
        """A signed ``Command`` from ``player_id`` (chat, "use item"...): act on it and return
        None, or return why it is refused (the player gets an ``astranet.command_refused``
        event). Called in the tick (Stage.INPUT), in seq order, rate-limited per player.
        The default refuses everything: a game opts in by overriding it."""
        return "this game takes no commands"

    def relevance(self, sim: SimContext, net_id: int) -> Any:
        """Interest management: what the player whose avatar is ``net_id`` may see this tick.

        Return a :class:`~astranet.replication.interest.Relevance` (store rows + priority
        weights; :class:`~astranet.replication.interest.SpatialGrid` builds one from
        positions) or None for everything. Called once per connected player per tick, after
        the simulation; entities entering relevance spawn on that client, leaving it despawn.
        Overriding it (or setting ``snapshot_budget_bytes_per_s``) switches the room to the
        budgeted encoder (astranet.replication.interest).
        """
        return None

    @property
    def uses_interest(self) -> bool:
        """Whether this game overrides :meth:`relevance` or sets a snapshot budget."""
        overridden = type(self).relevance is not Game.relevance
        return overridden or self.snapshot_budget_bytes_per_s is not None


def _search_current_directory() -> None:
    """Let ``--game mygame:game`` find ``./mygame.py``, as ``python -m`` would.

    A console script's ``sys.path[0]`` is its bin folder, not the directory it was started
    from, so a game next to the user's shell would not be importable without this.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def load_game(spec: str) -> Game:
    """Import ``MODULE:ATTR`` and return the game object (instantiating a class)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--game: expected MODULE:ATTR, got {spec!r}")
    _search_current_directory()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"--game: cannot import module {module_name!r}: {exc}") from exc
    try:
        game = getattr(module, attr)
    except AttributeError as exc:
        raise ConfigurationError(f"--game: module {module_name!r} has no {attr!r}") from exc
    if isinstance(game, type):
        game = game()
    if not isinstance(getattr(game, "schema", None), Schema):
        raise ConfigurationError(f"--game: {spec} has no replication schema (a Schema)")
    for method in ("setup", "spawn_player", "decode_input", "apply_input"):
        if not callable(getattr(game, method, None)):
            raise ConfigurationError(f"--game: {spec} does not implement {method}()")
    return game
