"""The edge's admin surface: a REST API on its own port (accounts, keys, policies, the
catalog view) and the `bytespike` CLI over it."""
