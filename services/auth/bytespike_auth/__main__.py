from __future__ import annotations

import uvloop

from bytespike_auth.server import create_server
from bytespike_auth.settings import Settings
from bytespike_common import logs
from bytespike_common.grpc_server import wait_for_signal


async def serve(settings: Settings) -> None:
    async with create_server(settings):
        await wait_for_signal()


def main() -> None:
    settings = Settings()
    logs.configure("auth", settings.log_level, settings.log_json)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
