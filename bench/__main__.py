"""``python -m bench`` (``make bench``); ``python -m bench --quick`` for a ~2-minute smoke run;
``python -m bench --only adoption`` for issue 9's scenario alone."""

from bench.cli import main

raise SystemExit(main())
