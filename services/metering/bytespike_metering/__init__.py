"""metering: admission (limits, credit holds) and settlement of usage events."""
