"""``python -m durable_sync.cli``: the ``durable-sync`` command."""
import sys

from . import main

sys.exit(main())
