from __future__ import annotations

from bytespike_auth.server import create_server
from bytespike_auth.settings import Settings
from bytespike_common.grpc_server import run_service


def main() -> None:
    run_service("auth", Settings(), create_server)


if __name__ == "__main__":
    main()
