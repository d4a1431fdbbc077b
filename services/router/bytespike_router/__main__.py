from __future__ import annotations

from bytespike_common.grpc_server import run_service
from bytespike_router.server import create_server
from bytespike_router.settings import Settings


def main() -> None:
    run_service("router", Settings(), create_server)


if __name__ == "__main__":
    main()
