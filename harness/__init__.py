"""routeproof harness: real Envoy, echo backends, the Hypothesis machine and the CLI."""
