"""Running the installed CLI from tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CONVEYOR = str(Path(sys.executable).parent / "conveyor")

BUSY = {
    # torch, the slowest backend: runs long enough to stop, kill and interrupt them
    "CONVEYOR_EMBEDDING_BACKEND": "torch",
    "CONVEYOR_CHUNK_SIZE": "64",
    "CONVEYOR_CHUNK_OVERLAP": "8",
    "CONVEYOR_RETRY_BASE_SECONDS": "0.5",
    "OMP_NUM_THREADS": "1",
}
"""Workers with much to do and little waiting: small chunks (many per document),
quick retries, one thread each for the model."""


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "CONVEYOR_HOME": str(home), "HF_HUB_OFFLINE": "1", **extra}


def run(
    *args: str, home: Path, stdin: str | None = None, check: int | None = 0, **env: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [CONVEYOR, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for(home, **env),
        timeout=300,
    )
    if check is not None:
        assert result.returncode == check, (result.stdout, result.stderr)
    return result


def start(*args: str, home: Path, log: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
    """``conveyor ARGS`` in the background, its output appended to ``log``."""
    if log is None:
        return subprocess.Popen(
            [CONVEYOR, *args],
            env=env_for(home, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [CONVEYOR, *args], env=env_for(home, **env), stdout=out, stderr=subprocess.STDOUT
        )


def status(home: Path, **env: str) -> dict[str, Any]:
    return json.loads(run("status", "--json", home=home, **env).stdout)
