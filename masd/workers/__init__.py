"""Worker processes beside the daemon, so that accepting and sending use more than one core.

The daemon's side and each worker's process body are apart: the daemon imports the supervisors, a
worker process runs its body with ``python -m``.

    supervise.py        the restart loop, written once: start a worker with its configuration, watch it,
                        start it again with backoff, stop it by closing its pipe
    send.py             SendWorkers, the daemon's side of ``[send] workers``
    intake.py           IntakeWorkers, the daemon's side of ``[intake] workers`` (and their shared socket)
    child.py            what every worker process does first: leave signals to the daemon, read its
                        configuration, open its line back to the daemon
    send_process.py     a send worker's process (``python -m masd.workers.send_process``)
    intake_process.py   an intake worker's process (``python -m masd.workers.intake_process``)

Nothing is imported here: a worker process loads only what its own body needs (a send worker no web
framework), so import the supervisors from their modules.
"""

from __future__ import annotations

__all__: list[str] = []
