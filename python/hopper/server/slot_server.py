"""Entry point of a broker's slot server process (`slot_servers.py`): the configuration
its broker resolved, from the environment, served by Granian."""

from __future__ import annotations

import json
import os
import sys

from hopper.server.config import ServerConfig
from hopper.server.main import CONFIG_ENV, run_server
from hopper.server.parent_death import die_with_parent
from hopper.server.slot_servers import PARENT_ENV

if __name__ == "__main__":
    # Set here rather than between fork and exec: the broker has threads running.
    die_with_parent(int(os.environ[PARENT_ENV]))
    sys.exit(run_server(ServerConfig.from_json(json.loads(os.environ[CONFIG_ENV])), cluster=True))
