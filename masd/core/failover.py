"""Channel failover: a channel with a ``backup`` hands its queued deliveries to the backup while its link
has been down longer than ``failover_after_seconds``, and takes them back when the link is up again.

:class:`FailoverWatch` is the task that decides, one per channel with a backup, started by that
channel's dispatcher in its own nursery and ended with it. It looks at the driver's ``up`` a few times
a second. Once the link has been down past the threshold it marks the channel failed over in the
:class:`Failover` state (which :meth:`masd.core.gateway.Gateway.prepare` consults, so new deliveries
for the channel go to the backup at once) and moves the channel's queued deliveries to the backup
(:func:`masd.store.resends.fail_over`), again at every look while the link stays down, so that what is
put back on the channel meanwhile (a retry, a resend) follows. When the link is up again the deliveries
whose home is the channel and that are still queued come back (:func:`masd.store.resends.fail_back`);
a delivery the backup has claimed is the backup's to finish. The first time the link comes up after a
start, deliveries left away from home by an earlier run come back too.

Each process (node, send worker) decides from its own view of its own binds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
import trio

from masd.metrics import Metrics
from masd.store import resends as resend_store
from masd.store.db import Database

__all__ = ["Failover", "FailoverWatch"]

log = structlog.get_logger("masd.failover")


class Failover:
    """Which channels have handed their work to a backup, as this process sees it now, and since when
    each link is down (drivers report it through ``Gateway.link_state``)."""

    def __init__(self) -> None:
        self._backup_of: dict[str, str] = {}
        self._down_since: dict[str, float] = {}  # time.monotonic() of the last report of a link down

    def link_changed(self, channel: str, up: bool) -> None:
        if up:
            self._down_since.pop(channel, None)
        else:
            self._down_since.setdefault(channel, time.monotonic())

    def down_since(self, channel: str) -> float | None:
        """When the channel's driver last reported its link down (None: not since it was last up, or
        never reported: a link that never came up)."""
        return self._down_since.get(channel)

    def begin(self, channel: str, backup: str) -> None:
        self._backup_of[channel] = backup

    def end(self, channel: str) -> None:
        self._backup_of.pop(channel, None)

    def active(self, channel: str) -> str | None:
        """The backup ``channel`` hands its work to now, or None."""
        return self._backup_of.get(channel)

    def divert(self, channel: str) -> tuple[str, str | None]:
        """Where a new delivery routed to ``channel`` goes: the channel itself, or while it is failed
        over its backup (that backup's backup, should it be failed over too), with ``channel`` as the
        home it comes back to."""
        at = channel
        seen = {channel}
        while (nxt := self._backup_of.get(at)) is not None and nxt not in seen:
            seen.add(nxt)
            at = nxt
        return (channel, None) if at == channel else (at, channel)


class FailoverWatch:
    """Watches one channel's link and moves its queued deliveries to and from its backup."""

    def __init__(
        self,
        channel: str,
        backup: str,
        after: float,
        *,
        up: Callable[[], bool],
        state: Failover,
        db: Database,
        metrics: Metrics,
        wake: Callable[[str], None],
    ) -> None:
        self.channel = channel
        self.backup = backup
        self.after = after
        self._up = up
        self._state = state
        self._db = db
        self._wake = wake
        self._failovers = metrics.failovers.labels(channel)
        self._gauge = metrics.channel_failover.labels(channel)
        self._gauge.set(0)
        self.active = False
        self._announce = False  # the first move of a failover is logged as "failover"
        self.tick = max(0.05, min(1.0, after / 4))

    async def run(self) -> None:
        seen_down: float | None = None  # when this watch first saw the link down (it may never have been up)
        started = True  # the first time the link is up: bring home what an earlier run left away
        while True:
            try:
                if self._up():
                    seen_down = None
                    if self.active or started:
                        await self._fail_back(started)
                        started = False
                else:
                    at = time.monotonic()
                    if seen_down is None:
                        seen_down = at
                    # The driver's own report is exact; a link up and down again between two looks
                    # would otherwise count from the first down.
                    since = self._state.down_since(self.channel) or seen_down
                    if at - since >= self.after:
                        await self._fail_over(at - since)
            except Exception as e:  # the store refused: try again at the next look
                log.warning(
                    "failover: cannot move deliveries; will try again", channel=self.channel, error=str(e)
                )
            await trio.sleep(self.tick)

    async def _fail_over(self, down_for: float) -> None:
        if not self.active:
            self.active = True
            self._announce = True
            self._state.begin(self.channel, self.backup)
            self._failovers.inc()
            self._gauge.set(1)
        now = time.time()
        n = await self._db.write(
            lambda c: resend_store.fail_over(c, channel=self.channel, backup=self.backup, now=now)
        )
        if self._announce:
            self._announce = False
            log.warning(
                "failover",
                channel=self.channel,
                backup=self.backup,
                down_seconds=round(down_for, 1),
                count=n,
            )
        elif n:
            log.info("failover: more deliveries moved", channel=self.channel, backup=self.backup, count=n)
        if n:
            self._wake(self.backup)

    async def _fail_back(self, at_start: bool) -> None:
        now = time.time()
        n = await self._db.write(lambda c: resend_store.fail_back(c, channel=self.channel, now=now))
        was_active = self.active
        self.active = False
        self._state.end(self.channel)
        self._gauge.set(0)
        if was_active or n:
            log.info("failback", channel=self.channel, backup=self.backup, count=n, at_start=at_start)
        if n:
            self._wake(self.channel)
