"""routeproof harness: real Envoy, echo backends, the Hypothesis machine and the CLI.

Envoy is spawned from a process that runs gRPC servers; without this, gRPC's fork handlers
print a warning on every spawn.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
