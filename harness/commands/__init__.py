"""The commands: `check`, `replay`, `mutants`, `scenario`, `serve`, `probe`, `smoke`."""
