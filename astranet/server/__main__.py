"""``python -m astranet.server`` / ``astranet-server``: the headless runner."""

from astranet.server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
