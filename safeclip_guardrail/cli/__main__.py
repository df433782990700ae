import sys

from safeclip_guardrail.cli import main

sys.exit(main())
