# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""A web server in a child process for end-to-end tests: a free loopback port, bounded start-up, always stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message carries the end of its log."""


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _log_tail(log_path: Path, characters: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-characters:] if log_path.is_file() else "(no log)"


def _answers(url: str) -> bool:
    # No proxy, whatever the environment says: the server is on this machine.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def running_server(
    command: list[str],
    url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    startup_timeout: float = 90.0,
) -> Iterator[subprocess.Popen]:
    """Starts `command`, waits until `url` answers 200, yields the process; terminates (then kills) it on exit.

    Raises:
        ServerStartError: the process exited, or `url` did not answer within `startup_timeout` seconds.
    """
    log_path = Path(log_path)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers(url):
            if process.poll() is not None:
                raise ServerStartError(
                    f"server exited with code {process.returncode} before answering {url}:\n{_log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise ServerStartError(f"{url} did not answer within {startup_timeout:.0f} s:\n{_log_tail(log_path)}")
            time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)  # a loaded CI machine can take seconds to close Gradio's server
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
