"""Calling upstream vendors: one small client interface, so the transport is a measured choice."""
