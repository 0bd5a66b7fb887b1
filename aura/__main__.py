import sys

from aura.cli import main

sys.exit(main())
