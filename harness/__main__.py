"""`python -m harness ...`: see `harness.commands.cli`."""

from harness.commands.cli import main

if __name__ == "__main__":  # worker processes (spawn) import this module as __mp_main__
    raise SystemExit(main())
