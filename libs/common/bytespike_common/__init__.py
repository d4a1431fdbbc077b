"""Code every ByteSpike service shares: settings, gRPC bootstrap, NATS, errors, telemetry names."""
