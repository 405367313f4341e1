"""The daemon's side of its worker processes, written once: :class:`WorkerProcesses`.

Each worker gets its configuration as one JSON line on stdin, which the daemon keeps open; closing that
pipe is the worker's signal to finish (see :mod:`masd.workers.child`), so a worker also ends when the
daemon is killed. A worker that exits is started again: at once after a long life, with a doubling
delay while it keeps failing (a bad database URL, say).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import trio

__all__ = ["LONG_LIFE", "RESTART_FIRST", "RESTART_MAX", "WorkerProcesses", "stop_worker"]

RESTART_FIRST = 1.0  # seconds before the first restart
RESTART_MAX = 30.0  # … and at most, while a worker keeps failing
LONG_LIFE = 60.0  # seconds: a worker that lived this long is started again at once


async def stop_worker(proc: trio.Process, timeout: float) -> None:
    """Close the worker's stdin (its signal to finish), wait up to ``timeout``, then kill it."""
    if proc.returncode is not None:
        return
    if proc.stdin is not None:
        await proc.stdin.aclose()
    with trio.move_on_after(timeout):
        await proc.wait()
        return
    proc.kill()
    await proc.wait()


class WorkerProcesses:
    """Worker processes of one kind, each kept running by its own :meth:`keep` task until :meth:`drain`.

    ``argv(i)`` and ``config(i)`` are worker ``i``'s command line and configuration line; ``on_exit(i)``
    is told each time worker ``i`` has ended; ``log`` is the supervisor's logger."""

    def __init__(
        self,
        kind: str,
        *,
        argv: Callable[[int], list[str]],
        config: Callable[[int], bytes],
        stop_timeout: float,
        log: Any,
        pass_fds: Sequence[int] = (),
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.kind = kind
        self.started = 0  # worker processes started, restarts included
        self.procs: dict[int, trio.Process] = {}
        self.draining = False
        self._argv = argv
        self._config = config
        self._stop_timeout = stop_timeout
        self._log = log
        self._pass_fds = tuple(pass_fds)
        self._on_exit = on_exit

    async def keep(self, index: int) -> None:
        """Run worker ``index``, and start it again whenever it exits, until the workers drain."""
        delay = RESTART_FIRST
        argv = self._argv(index)
        config = self._config(index)
        while not self.draining:
            began = trio.current_time()
            proc = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, pass_fds=self._pass_fds)
            self.procs[index] = proc
            self.started += 1
            assert proc.stdin is not None
            try:
                await proc.stdin.send_all(config)
                code = await proc.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await stop_worker(proc, self._stop_timeout)
            if self._on_exit is not None:
                self._on_exit(index)
            if self.draining:
                return
            delay = RESTART_FIRST if trio.current_time() - began > LONG_LIFE else min(delay * 2, RESTART_MAX)
            self._log.warning(
                f"{self.kind} worker exited; starting it again", worker=index, code=code, after_s=delay
            )
            await trio.sleep(delay)

    async def drain(self) -> None:
        """Ask every worker to finish (its pipe closes) and wait, up to the stop timeout, until they have."""
        self.draining = True
        for proc in list(self.procs.values()):
            if proc.stdin is not None:
                await proc.stdin.aclose()
        with trio.move_on_after(self._stop_timeout):
            for proc in list(self.procs.values()):
                await proc.wait()
