"""`python -m controller` is `llm-gitops`."""

import sys

from controller.cli import main

sys.exit(main())
