"""Hypothesis profiles for pytest, and quiet gRPC in test processes.

`dev` is the default, `ci` is chosen automatically when CI=true, `deep` is for long hunts.
Choose one with HYPOTHESIS_PROFILE=<name> or `pytest --hypothesis-profile <name>`
(the option wins over the variable).
"""

from __future__ import annotations

import os

# Before grpc is imported: Envoy is spawned from a process that runs gRPC servers.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from harness.commands.profiles import load_profile_from_environment, register_profiles

register_profiles()
load_profile_from_environment()
