"""Starting the real gateway (`python -m gateway serve`) as a subprocess for end-to-end tests."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp


def free_port() -> int:
    """A TCP port nobody listens on (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(cwd: Path, port: int, env: dict[str, str], *extra: str,
                  command: str = "serve") -> subprocess.Popen[bytes]:
    """`paht serve --port PORT` (or another command) with stderr appended to server.log."""
    args = [sys.executable, "-m", "gateway", command]
    if command == "serve":
        args += ["--port", str(port)]
    with (cwd / "server.log").open("ab") as log:
        return subprocess.Popen([*args, *extra], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=log)


def wait_ready(port: int, proc: subprocess.Popen[bytes] | None = None,
               path: str = "/readyz", tries: int = 600) -> None:
    """Block until the server answers 200 on `path` (fails if the process exits)."""
    for _ in range(tries):
        if proc is not None:
            assert proc.poll() is None, "server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not come up")


async def await_ready(port: int, proc: subprocess.Popen[bytes] | None = None,
                      path: str = "/readyz", tries: int = 600) -> None:
    """`wait_ready` for async tests (does not block the event loop)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(tries):
            if proc is not None:
                assert proc.poll() is None, "server exited"
            try:
                async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not come up")
