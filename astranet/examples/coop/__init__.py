"""coop: the example co-op game (the default game of ``astranet-server``).

Up to 4 players move and shoot in a top-down arena against waves of drones that chase the
nearest player; wave k brings 8k drones (up to 600); kills score for the whole team. The
simulation is deterministic and the player step is shared with client prediction.
Rules, components and the 4-byte input blob: astranet/examples/coop/README.md.
Benchmark: benchmarks/coop_tick.py.
"""

# The schema (components, constants, snapping) is re-exported whole from components.__all__,
# so those names are listed once, where they are defined; the rest is picked by name.
# bot_kit says how bots play coop (astranet-bots, astranet-loadtest find it here via --game).
from astranet.examples.coop import components
from astranet.examples.coop.brain import bot_kit
from astranet.examples.coop.components import *  # noqa: F403
from astranet.examples.coop.game import Coop, fire_ready, game
from astranet.examples.coop.input import Command, decode_command, encode_command, encode_input
from astranet.examples.coop.sim import step_avatar

__all__ = [
    *components.__all__,
    "Command",
    "Coop",
    "bot_kit",
    "decode_command",
    "encode_command",
    "encode_input",
    "fire_ready",
    "game",
    "step_avatar",
]
