"""One module per client protocol; each parses its wire format and drives `Gateway`."""
