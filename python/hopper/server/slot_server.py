"""Entry point of a broker's slot server process (`slot_servers.py`): the configuration
its broker resolved, from the environment, served by Granian."""

from __future__ import annotations

import json
import os
import sys

from hopper.server.config import ServerConfig
from hopper.server.main import CONFIG_ENV, run_server

if __name__ == "__main__":
    sys.exit(run_server(ServerConfig.from_json(json.loads(os.environ[CONFIG_ENV])), cluster=True))
