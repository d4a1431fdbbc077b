"""Translation core: one IR, three symmetric protocol codecs (DESIGN §4, reference §6-§10).

A pure library — no HTTP, no I/O. `registry.codec_for(protocol)` gives the codec for a
client or upstream protocol; see `codec.Codec` for the surface every codec offers.
"""
