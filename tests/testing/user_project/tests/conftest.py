import os
import subprocess

import pytest


@pytest.fixture(scope="session")
def nats_server(nats_server):
    """The plugin's test server, with this project's schemas and streams, as in production."""
    env = {**os.environ, "NATS_URL": nats_server}
    subprocess.run(["polyn", "schemas", "load"], env=env, check=True)
    subprocess.run(["polyn", "migrate"], env=env, check=True)
    return nats_server
