"""The system under test: a Gateway API control plane serving real Envoy over xDS."""
