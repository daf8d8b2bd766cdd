"""``python -m testbed feed FIFO …``."""

from testbed import main

raise SystemExit(main())
