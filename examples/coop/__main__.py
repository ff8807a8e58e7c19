"""``python -m examples.coop``: start the coop visual client (see examples/coop/client.py)."""

import sys

from examples.coop.client import main

sys.exit(main())
