"""The job server: a raw ASGI app over the engine, served by Granian."""

from hopper.server.app import HopperApp, create_app
from hopper.server.config import ServerConfig

__all__ = ["HopperApp", "ServerConfig", "create_app"]
