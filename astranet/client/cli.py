"""What the client programs (``astranet-client``, ``astranet-coop``) share: exit statuses, main().

Each program's ``main`` parses its flags and hands :func:`run_main` the session to run, so both
end the same way: Ctrl-C is a clean exit, an :class:`~astranet.errors.AstranetError` left over
is one ``PROG: message`` line on stderr (no traceback) and exit status ``EXIT_SESSION``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from astranet.errors import AstranetError

__all__ = ["EXIT_CONNECT", "EXIT_JOIN", "EXIT_OK", "EXIT_SESSION", "run_main"]

EXIT_OK, EXIT_CONNECT, EXIT_JOIN, EXIT_SESSION = 0, 2, 3, 4


def run_main(prog: str, session: Callable[[], int]) -> int:
    """Run ``session`` (it returns the exit status) the way every client program ends."""
    try:
        return session()
    except KeyboardInterrupt:
        return EXIT_OK
    except AstranetError as exc:  # anything left is still a clear message, not a traceback
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_SESSION
