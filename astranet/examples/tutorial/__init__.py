"""The tutorial game, "orbs", one runnable file per step of docs/tutorial.md.

Players run around a square arena collecting orbs; a collected orb reappears somewhere else and
the collector scores a point. Each step builds on the previous one:

    step0_single_player  plain esper: dataclass components, per-entity processors, a loop
    step1_columns        replicated components in numpy columns; a vectorised collect system
    step2_game           the same rules as an astranet ``Game`` (serve it with astranet-server)
    step4_client         a headless client: GameClient + ClientWorld, prediction, interpolation

(Step 3 runs the server from the command line and step 5 is a test: tests/test_tutorial.py.)
The regions between ``# --8<-- [start:NAME]`` and ``# --8<-- [end:NAME]`` comments are quoted
verbatim in docs/tutorial.md; tests/test_tutorial.py fails if the two drift apart.
"""
