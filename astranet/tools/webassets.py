"""Put the browser client's library and its vendor ES modules next to the page it serves.

The side port serves ``/play/`` from the package folder ``astranet/web/`` only. The page needs
the JS client library (``js/src/*.js``, the source of truth) and @msgpack/msgpack's ES modules
(``js/node_modules/@msgpack/msgpack/dist.esm/**/*.mjs``, installed by ``npm ci`` from the lock
file). This copies both, byte for byte, into ``astranet/web/lib/`` and
``astranet/web/vendor/msgpack/`` (git-ignored build output; nothing generated is committed).
The page's import map points ``@msgpack/msgpack`` at the copy. ``make web`` runs it;
``make run`` and ``make test`` depend on it.

Usage: ``python -m astranet.tools.webassets [--repo DIR]``. Exits non-zero with a message
when ``npm ci`` has not been run.
Benchmark: none (a few dozen small files).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

__all__ = ["REPO", "copy_web_assets", "main"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
_LIB = ("js/src", "*.js", "astranet/web/lib")
_MSGPACK = ("js/node_modules/@msgpack/msgpack/dist.esm", "**/*.mjs", "astranet/web/vendor/msgpack")


class MissingNodeModules(FileNotFoundError):
    """js/node_modules is not installed (run ``npm ci`` in js/, or ``make web``)."""


def copy_web_assets(repo: Path = REPO) -> list[Path]:
    """Copy the library and vendor modules into astranet/web/; returns the files written."""
    written: list[Path] = []
    for source, pattern, target in (_LIB, _MSGPACK):
        files = sorted((repo / source).glob(pattern))
        if not files:
            raise MissingNodeModules(f"no {pattern} in {repo / source}: run `npm ci` in js/")
        destination = repo / target
        if destination.exists():
            shutil.rmtree(destination)  # a file removed from js/src must not linger
        destination.mkdir(parents=True)
        for file in files:
            target_file = destination / file.relative_to(repo / source)
            target_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target_file)
            written.append(target_file)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astranet.tools.webassets")
    parser.add_argument("--repo", type=Path, default=REPO, help="repository root")
    args = parser.parse_args(argv)
    try:
        written = copy_web_assets(args.repo)
    except MissingNodeModules as exc:
        print(f"webassets: {exc}", file=sys.stderr)
        return 1
    print(f"webassets: {len(written)} files into {args.repo / 'astranet/web'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
