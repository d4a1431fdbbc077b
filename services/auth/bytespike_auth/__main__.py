"""`bytespike-auth` serves the auth gRPC services; `bytespike-auth migrate` only migrates."""

from __future__ import annotations

import argparse
import asyncio

from bytespike_auth.server import create_server, migrate
from bytespike_auth.settings import Settings
from bytespike_common import logs
from bytespike_common.grpc_server import run_service


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bytespike-auth", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "migrate"],
        default="serve",
        help="serve (default) or migrate: apply the database migrations and exit",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "migrate":
        logs.configure("auth", settings.log_level, settings.log_json)
        asyncio.run(migrate(settings))
        return
    run_service("auth", settings, create_server)


if __name__ == "__main__":
    main()
