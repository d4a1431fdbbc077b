"""Reloads the catalog file when it changes; an invalid file leaves the previous table in force.

A mounted ConfigMap is updated by swapping a `..data` symlink in the mount directory, so
the whole directory is watched, not the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from watchfiles import awatch

from bytespike_router.catalog import Catalog, CatalogError, load_catalog, parse_catalog
from bytespike_router.hub import RouteTableHub
from bytespike_router.routes import build_route_table

log = logging.getLogger(__name__)


class CatalogReloader:
    def __init__(self, path: Path, hub: RouteTableHub) -> None:
        self._path = path
        self._hub = hub
        self.last_error: str | None = None

    async def reload(self) -> bool:
        try:
            return await self.apply(load_catalog(self._path, os.environ))
        except CatalogError as exc:
            return self._reject(exc)

    async def reload_text(self, text: str, source: str) -> bool:
        try:
            return await self.apply(parse_catalog(text, source, os.environ))
        except CatalogError as exc:
            return self._reject(exc)

    def _reject(self, exc: CatalogError) -> bool:
        self.last_error = str(exc)
        log.error("catalog rejected, keeping version %s: %s", self._hub.current.version, exc)
        return False

    async def apply(self, catalog: Catalog) -> bool:
        self.last_error = None
        changed = await self._hub.publish(build_route_table(catalog))
        if changed:
            log.info("catalog reloaded: version %s", catalog.version)
        return changed

    async def run(self) -> None:
        directory = self._path.absolute().parent
        async for _changes in awatch(directory, debounce=100, step=25, recursive=False):
            await self.reload()
