"""``python -m pipelines.watch``: the watcher's command line, as a container runs it."""

import sys

from pipelines.watch.run import main

sys.exit(main())
