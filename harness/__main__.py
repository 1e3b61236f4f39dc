"""`python -m harness ...`: see `harness.commands.cli`."""

from harness.commands.cli import main

raise SystemExit(main())
