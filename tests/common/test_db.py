"""The shared engine factory's SQLite settings."""

from __future__ import annotations

from pathlib import Path

from bytespike_common import db


async def test_sqlite_pools_hand_out_the_connection_used_last(tmp_path: Path) -> None:
    # Each SQLite connection has its own page cache: the busiest one should stay warm.
    engine = db.create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    try:
        first, second = await engine.connect(), await engine.connect()
        used_first = (await first.get_raw_connection()).driver_connection
        used_last = (await second.get_raw_connection()).driver_connection
        await first.close()
        await second.close()  # back to the pool last, so out of it first
        async with engine.connect() as again:
            assert (await again.get_raw_connection()).driver_connection is used_last
        assert used_last is not used_first
    finally:
        await engine.dispose()
