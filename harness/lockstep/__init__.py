"""The model-versus-SUT check: the stack on loopback, the operations applied to model and stack
side by side, the Hypothesis machine, and the invariants (the xDS protocol monitor among them)."""
