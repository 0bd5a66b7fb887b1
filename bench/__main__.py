"""``python -m bench`` (``make bench``); ``python -m bench --quick`` for a ~1-minute smoke run."""

from bench.cli import main

raise SystemExit(main())
