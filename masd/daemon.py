"""``masd run``: the nursery tree that owns every long-lived task of the daemon.

    run
    ├── store group committer
    ├── queue watch         (this node's count of unfinished deliveries, for admission and the gauge)
    ├── channel driver × N  (each keeps its link up)
    ├── dispatcher × N      (claims and sends)
    ├── HTTP server         (the meeting module's routes too, on every node)
    ├── send workers, intake workers (when configured)
    ├── socket server       (per connection: reader, writer, pusher, cursor writer)
    └── jobs                (each on one node at a time, under a lease in the database: masd.jobs)
        ├── housekeeping    (lost claims, overdue deliveries, old events)
        ├── meeting         (会信通 scheduler: notices, escalation, reminders, schedule items, replies)
        ├── dbpoll:CODE × N (intake from api_mt, reports into api_rpt/api_mo)
        └── webhooks        (one task per app with a webhook)

Everything above the jobs runs on every node sharing the database: claims are leases that several
nodes take from one queue. The jobs must run once; on a node alone (SQLite) they all run here, and with
several nodes each runs where its lease is, moving to a survivor within about 10 s when its node dies.

Shutdown (SIGINT/SIGTERM) stops the jobs and gives their leases back, asks the dispatchers to stop
claiming, gives what is in flight until the drain deadline, returns unsent claims to the queue and then
cancels the rest.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

import structlog
import trio

from masd.config import Config, ConfigError
from masd.core.dispatch import Dispatcher
from masd.core.gateway import Gateway
from masd.jobs import Fence, JobRunner
from masd.metrics import Metrics
from masd.node import ChannelStatus
from masd.store import events as event_store
from masd.store import queue as queue_store
from masd.store import receipts as receipt_store
from masd.store.db import Database, database_from_config
from masd_adapters.base import ChannelDriver, driver_class

if TYPE_CHECKING:
    from masd.interfaces.http import Mount
    from masd.modules.meeting.service import MeetingService
    from masd.workers.intake import IntakeWorkers
    from masd.workers.send import SendWorkers

__all__ = ["Daemon", "load_driver"]

log = structlog.get_logger("masd.daemon")
DRAIN_SECONDS = 5.0
LATE_RECEIPTS_LOOKBACK = 10_000  # receipts a new housekeeping holder looks at again (a node died)


def load_driver(name: str) -> type[ChannelDriver]:
    """The channel driver class registered as ``name`` (masd.channels entry points); ConfigError if none."""
    try:
        return driver_class(name)
    except (LookupError, TypeError) as e:
        raise ConfigError(str(e)) from None


class Daemon:
    def __init__(self, cfg: Config, db: Database | None = None, *, role: str = "daemon") -> None:
        """``role`` "sender": a send worker's process (masd.workers.send_process), which only sends; the
        daemon does the housekeeping and answers signals for it."""
        self.cfg = cfg
        self.role = role
        self.db = db or database_from_config(cfg)
        self.metrics = Metrics()
        self.gateway = Gateway(cfg, self.db, self.metrics)
        self.db.on_batch = self.metrics.commit_batch.observe
        self.node = cfg.node_name
        self.drivers: dict[str, ChannelDriver] = {}
        self.dispatchers: dict[str, Dispatcher] = {}
        for name, ch in cfg.channels.items():
            cls = load_driver(ch.driver)
            try:
                self.drivers[name] = cls(name, ch.options, self.gateway, str(cfg.data_path))
            except (ValueError, TypeError) as e:
                raise ConfigError(f"channels.{name}.options: {e}") from None
            self.dispatchers[name] = Dispatcher(name, ch, self.drivers[name], self.gateway, cfg, self.node)
        self.meeting: MeetingService | None = None
        if cfg.meeting.enabled:
            from masd.modules.meeting.service import MeetingService

            self.meeting = MeetingService(self.gateway, cfg)
        self.intake: IntakeWorkers | None = None
        self.send_workers: SendWorkers | None = None
        self.jobs = JobRunner(self.db, self.node, registry=self.metrics.registry)
        self.ready = False
        self.started = trio.Event()
        self._stop = trio.Event()

    def stop(self) -> None:
        self._stop.set()

    def channel_states(self) -> dict[str, ChannelStatus]:
        """Each channel's link and the rate it sends at now, in name order (masd.node.Node)."""
        states = {}
        for name, drv in sorted(self.drivers.items()):
            configured = self.cfg.channels[name].rate
            disp = self.dispatchers.get(name)
            states[name] = ChannelStatus(
                up=drv.up,
                rate=round(disp.pace.rate, 3) if disp is not None else configured,
                configured_rate=configured,
                throttled=disp is not None and disp.pace.slowed,
                problem=drv.problem,
            )
        return states

    def http_mounts(self) -> list[Mount]:
        """The modules' routers the HTTP API serves besides the core's, with what each needs."""
        from fastapi import Depends

        from masd.interfaces.http import Mount, calling_app
        from masd.modules.contacts.http import router as contacts_router
        from masd.modules.meeting.http import router as meeting_router

        return [
            Mount(contacts_router, dependencies=[Depends(calling_app)]),
            # The meeting routes check the key themselves: each app sees only the meetings it created.
            Mount(meeting_router, state={"meeting": self.meeting}),
        ]

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        t0 = time.monotonic()
        rev = await trio.to_thread.run_sync(self.db.upgrade)
        returned = await self.db.write(
            lambda c: queue_store.return_node_claims(c, node=self.node, now=time.time())
        )
        if returned:
            self.metrics.recovered_claims.inc(returned)
            log.warning(
                "claims of an earlier run returned to the queue; each may be sent twice", count=returned
            )
        await self.gateway.refresh_pending()
        log.info(
            "masd starting",
            node=self.node,
            store=self.db.describe(),
            schema=rev,
            config=self.cfg.source,
            channels=list(self.cfg.channels),
            queued=self.gateway.pending,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(self.db.run_committer)
            if self.role == "daemon":
                nursery.start_soon(self._watch_queue)
                self.jobs.add("housekeeping", self._housekeeping)
            for name, drv in self.drivers.items():
                nursery.start_soon(self._keep_driver, name, drv)
            for disp in self.dispatchers.values():
                await nursery.start(disp.run)
            if self.meeting is not None:
                meeting = self.meeting
                await meeting.start()  # its app, which its HTTP routes need on every node
                self.jobs.add("meeting", lambda fence: meeting.schedule())
            if self.cfg.http.enabled:
                from masd.interfaces.http import serve_http

                await nursery.start(serve_http, self, self.http_mounts())
            if self.cfg.send.workers and self.role == "daemon":
                from masd.workers.send import SendWorkers

                self.send_workers = SendWorkers(self.cfg, self.metrics, self.gateway.signal_events)
                await nursery.start(self.send_workers.run)
            if self.cfg.intake.workers:
                from masd.workers.intake import IntakeWorkers

                self.intake = IntakeWorkers(self.cfg, self.gateway)
                await nursery.start(self.intake.run)
            if self.cfg.dbpoll:
                from masd.interfaces.dbpoll import dbpoll_jobs

                for name, job in (await dbpoll_jobs(self)).items():
                    self.jobs.add(name, job)
            if self.cfg.socket.enabled:
                from masd.interfaces.socket import SocketServer

                self.socket_server = SocketServer(self.gateway, self.cfg.socket, self.metrics)
                await nursery.start(self.socket_server.serve)
            if self.cfg.webhooks.enabled:
                self.jobs.add("webhooks", self._webhooks)
            await nursery.start(self.jobs.run)
            if self.role == "daemon":
                nursery.start_soon(self._watch_signals)
            self.ready = True
            self.started.set()
            log.info(
                "masd ready",
                seconds=round(time.monotonic() - t0, 3),
                http=self.cfg.http.listen if self.cfg.http.enabled else "off",
                intake=self.intake.url if self.intake is not None else "off",
                jobs=sorted(self.jobs.held()),
                jobs_elsewhere=sorted(set(self.jobs.names) - set(self.jobs.held())),
            )
            task_status.started(self)
            await self._stop.wait()
            self.ready = False
            log.info("masd stopping: draining")
            await self.jobs.stop()
            if self.send_workers is not None:
                nursery.start_soon(self.send_workers.drain)  # they drain alongside
            for disp in self.dispatchers.values():
                await disp.drain()
            with trio.move_on_after(DRAIN_SECONDS):
                while any(d.inflight for d in self.dispatchers.values()):
                    await trio.sleep(0.05)
            for drv in self.drivers.values():
                with trio.move_on_after(DRAIN_SECONDS):
                    await drv.drain()
            await trio.sleep(0.1)  # let dispatchers return their unsent claims
            if self.send_workers is not None:
                await self.send_workers.drain()
            nursery.cancel_scope.cancel()
        self.db.dispose()
        log.info("masd stopped")

    async def _keep_driver(self, name: str, drv: ChannelDriver) -> None:
        # A driver that crashes is restarted with backoff; the dispatcher waits while it is down.
        delay = 1.0
        while True:
            try:
                await drv.run()
                return
            except Exception:
                drv.up = False
                self.gateway.link_state(name, False)
                log.exception("channel driver failed; restarting", channel=name, delay=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _webhooks(self, fence: Fence) -> None:
        from masd.interfaces.webhooks import WebhookSender

        await WebhookSender(self.gateway, self.cfg.webhooks, fence=fence).run()

    async def _watch_queue(self) -> None:
        # Every node admits work by its own count of unfinished deliveries; all nodes' work is counted.
        interval = max(0.5, min(5.0, self.cfg.queue.lease_seconds / 4))
        while True:
            await trio.sleep(interval)
            try:
                await self.gateway.refresh_pending()
            except Exception as e:
                log.warning("could not count the queue; will try again", error=str(e))

    async def _housekeeping(self, fence: Fence) -> None:
        q = self.cfg.queue
        interval = max(0.5, min(5.0, q.lease_seconds / 4))
        # The overdue sweeps read every queued and submitted row (no index serves them, and one would tax
        # every state change); validity and receipt timeouts are hours, so once a minute is plenty.
        sweep_every = max(interval, min(60.0, q.validity_seconds / 10, q.receipt_timeout_seconds / 10))
        next_sweep = 0.0
        # Receipts held while another node recorded their submits (masd.store.receipts): each receipt is
        # looked at in two passes, the second at least one interval after it came in.
        late = self.db.dialect != "sqlite"
        late_from = late_top = 0
        if late:
            late_top = await self.db.read(receipt_store.latest_receipt_id)
            late_from = max(0, late_top - LATE_RECEIPTS_LOOKBACK)
        while True:
            await trio.sleep(interval)
            now = time.time()
            try:
                if late:
                    top = await self.db.read(receipt_store.latest_receipt_id)
                    await self._apply_late_receipts(late_from, top, now)
                    late_from, late_top = late_top, top
                n = await self.db.write(lambda c: queue_store.return_expired_leases(c, now=now))
                if n:
                    self.metrics.recovered_claims.inc(n)
                    log.warning("expired leases returned to the queue", count=n)
                swept: dict[str, int] = {}
                if trio.current_time() >= next_sweep:
                    next_sweep = trio.current_time() + sweep_every
                    swept = await self.db.write(
                        lambda c: queue_store.sweep_overdue(
                            c, now=now, receipt_timeout=q.receipt_timeout_seconds
                        )
                    )
                for why, count in swept.items():
                    if count:
                        self.metrics.deliveries_final.labels("expired").inc(count)
                        log.info("deliveries expired", why=why, count=count)
                        self.gateway.signal_events()
                if swept:
                    keep = self.cfg.events.retention_days * 86400
                    pruned = await self.db.write(lambda c: event_store.prune(c, before=now - keep))
                    if pruned:
                        log.info(
                            "old app events dropped",
                            count=pruned,
                            retention_days=self.cfg.events.retention_days,
                        )
            except Exception as e:
                log.warning("housekeeping failed; will try again", error=str(e))

    async def _apply_late_receipts(self, after: int, up_to: int, now: float) -> None:
        found = await self.db.read(lambda c: receipt_store.held_now_known(c, after_id=after, up_to=up_to))
        applied = 0
        for channel, carrier_ids in found.items():
            policy = self.gateway.resend_policies.get(channel)

            def apply(
                c: Any, channel: str = channel, ids: list[str] = carrier_ids, policy: Any = policy
            ) -> int:
                return receipt_store.apply_held(c, channel=channel, carrier_ids=ids, now=now, resend=policy)

            applied += await self.db.write(apply)
        if applied:
            log.info("receipts applied that came in while another node recorded their submits", count=applied)
            self.gateway.signal_events()

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.stop()
                return
