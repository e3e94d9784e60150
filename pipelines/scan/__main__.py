"""``python -m pipelines.scan``: the scan's command line, as Airflow's Beam operator runs it."""

import sys

from pipelines.scan.run import main

sys.exit(main())
