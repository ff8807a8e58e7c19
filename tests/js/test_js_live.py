"""The JS GameClient against a real server: join, exact prediction, folded acks, typed
UnknownRegion and SchemaMismatch, and Resume after the TCP connection is cut (a Node proxy).
Runs ``node --experimental-websocket --test js/live/`` (Node 20's WebSocket is behind that
flag) with the server's URLs in ASTRANET_WS_URL / ASTRANET_HTTP_URL.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from astranet.tools.serverproc import ServerProcess
from astranet.tools.webassets import REPO


@pytest.mark.timeout(120)
def test_js_client_against_a_live_server() -> None:
    node = shutil.which("node")
    assert node, "node (>= 20) is needed for the JS client tests"
    with ServerProcess() as server:
        env = {**os.environ, "ASTRANET_WS_URL": server.ws_url, "ASTRANET_HTTP_URL": server.http_url}
        result = subprocess.run(
            [node, "--experimental-websocket", "--test", "--test-reporter=spec", "live/"],
            cwd=REPO / "js",
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
        )
    if result.returncode != 0:
        pytest.fail(f"node --test failed:\n{result.stdout}\n{result.stderr}")
    assert "fail 0" in result.stdout
