"""`python -m monitoring [--check]`: regenerate the dashboards and rule files."""

import sys

from monitoring.build import main

sys.exit(main())
