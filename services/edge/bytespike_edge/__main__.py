"""`bytespike-edge`: the edge under uvicorn with uvloop and httptools."""

from __future__ import annotations

import uvicorn

from bytespike_common import logs
from bytespike_edge.app import create_app
from bytespike_edge.settings import Settings


def main() -> None:
    settings = Settings()
    logs.configure("edge", settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
    )


if __name__ == "__main__":
    main()
