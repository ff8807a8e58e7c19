"""``python -m astranet.examples.coop``: start the coop visual client (see
astranet/examples/coop/client.py)."""

import sys

from astranet.examples.coop.client import main

sys.exit(main())
