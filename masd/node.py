"""What an interface or a module may ask of the masd node it runs in: the small face of the daemon.

The interfaces (HTTP, DB polling) and the modules' routers read the configuration, the store, the
gateway, the metrics, whether the node is ready and how its channels are; they never import
:mod:`masd.daemon`. The daemon is a :class:`Node`; a process that serves part of the API without
channels (an intake worker, :mod:`masd.workers.intake_process`) builds a node of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

from masd.config import Config
from masd.core.gateway import Gateway
from masd.metrics import Metrics
from masd.store.db import Database

__all__ = ["ChannelStatus", "Node"]


@dataclasses.dataclass(frozen=True)
class ChannelStatus:
    """One channel as the node sees it now (``/readyz``, ``masd channels``)."""

    up: bool  # the driver's link to the carrier is up
    rate: float  # segments per second it sends at now; below the configured rate while throttled
    configured_rate: float
    throttled: bool  # the carrier throttled it and it has not yet recovered its rate
    problem: str | None = None  # why the link is down, when the driver knows (a refused login)


class Node(Protocol):
    """A running masd node, as interfaces and modules see it."""

    @property
    def cfg(self) -> Config:
        """The node's configuration, checked once at start."""
        ...

    @property
    def db(self) -> Database:
        """The store."""
        ...

    @property
    def gateway(self) -> Gateway:
        """The core's entry: accept, read and cancel messages, authenticate apps."""
        ...

    @property
    def metrics(self) -> Metrics:
        """The node's Prometheus metrics."""
        ...

    @property
    def ready(self) -> bool:
        """Started and not stopping."""
        ...

    def channel_states(self) -> Mapping[str, ChannelStatus]:
        """Each channel by name, in name order; empty on a node that sends nothing."""
        ...
