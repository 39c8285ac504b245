"""Reflection for the whole public API behind the gateway.

Every service reflects only what it serves; the gateway fronts all of them, so `grpcurl
<gateway> list` needs one server that describes every public service. This one serves
reflection (and health) and nothing else; the gateway routes ServerReflection here.
"""

from __future__ import annotations

import grpc

from fenlei import services
from fenlei.runtime.server import Service, serve
from fenlei.runtime.settings import ServiceSettings, load_settings

PART = services.CATALOG.name


def register(server: grpc.aio.Server, settings: ServiceSettings) -> Service:
    return Service([], described=[service.full_name for _, service in services.public_services()])


def main() -> None:
    serve(PART, load_settings(ServiceSettings, PART), register)


if __name__ == "__main__":
    main()
