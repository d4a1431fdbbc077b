"""edge: the data plane — terminates the three HTTP protocols, translates, calls upstreams."""
