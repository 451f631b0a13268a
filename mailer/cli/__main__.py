"""`python -m mailer.cli`: the same command as the console script."""

from mailer.cli import main

raise SystemExit(main())
