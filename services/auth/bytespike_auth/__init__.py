"""auth: accounts, API keys (stored as keyed hashes) and the principals the edge caches."""
