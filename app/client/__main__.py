"""``python -m app.client``: the batch client (see :mod:`app.client.batch`)."""

import sys

from app.client.batch import main

if __name__ == "__main__":
    sys.exit(main())
