"""The edge's links to the control plane: auth, router, metering, and the usage stream."""
