import sys

from rescore_sidecar.tools.cli import main

sys.exit(main())
