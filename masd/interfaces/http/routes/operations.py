"""Operators' routes, without a key: liveness (``/healthz``), readiness (``/readyz``) and ``/metrics``.

Readiness is three checks: the node has started and is not stopping, the store answers within
``READY_STORE_TIMEOUT`` and at least one channel is up. ``masd channels`` reads the channels' part.
"""

from __future__ import annotations

from collections.abc import Mapping

import trio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from masd.interfaces.http.models import HealthOut, ReadyOut
from masd.interfaces.http.state import NodeDep
from masd.node import ChannelStatus, Node
from masd.store.db import ping

__all__ = ["READY_STORE_TIMEOUT", "router"]

READY_STORE_TIMEOUT = 2.0  # seconds: a probe that hangs is worse than one that says "no"

router = APIRouter()


@router.get("/healthz", tags=["operations"], summary="Liveness", response_model=HealthOut)
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def _store_check(node: Node, limiter: trio.CapacityLimiter) -> str:
    with trio.move_on_after(READY_STORE_TIMEOUT):
        try:
            # abandon_on_cancel: a store that does not answer must not hold the probe past its deadline.
            await trio.to_thread.run_sync(node.db.read_sync, ping, limiter=limiter, abandon_on_cancel=True)
        except Exception as e:
            return f"error: {e}"
        return "ok"
    return f"no answer within {READY_STORE_TIMEOUT:g} s"


def _downs(names: list[str], states: Mapping[str, ChannelStatus]) -> str:
    """The channels that are down, each with why when its driver knows."""
    parts = [f"{n}: {states[n].problem}" if states[n].problem else n for n in names]
    return ", ".join(parts) or "none configured"


@router.get(
    "/readyz",
    tags=["operations"],
    summary="Readiness: started, the store answers, a channel is up",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready; failed names the checks"}},
)
async def readyz(request: Request, node: NodeDep) -> Response:
    states = node.channel_states()
    up = sorted(name for name, s in states.items() if s.up)
    down = sorted(name for name, s in states.items() if not s.up)
    ready = node.ready
    checks = {
        "daemon": "ok" if ready else "not ready (starting or stopping)",
        # One thread at most per application for probes: a hung store holds that one, not one per probe.
        "store": await _store_check(node, request.app.state.probe_limiter),
        "channels": f"up: {', '.join(up)}" if up else f"none up (down: {_downs(down, states)})",
    }
    failed = [
        name
        for name, ok in (("daemon", ready), ("store", checks["store"] == "ok"), ("channels", bool(up)))
        if not ok
    ]
    channels = {
        name: {
            "up": s.up,
            "rate": s.rate,
            "configured_rate": s.configured_rate,
            "throttled": s.throttled,
            "problem": s.problem,
        }
        for name, s in sorted(states.items())
    }
    return JSONResponse(
        {
            "status": "not_ready" if failed else "ready",
            "checks": checks,
            "failed": failed,
            "channels": channels,
        },
        status_code=503 if failed else 200,
    )


@router.get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics(node: NodeDep) -> Response:
    return Response(node.metrics.render(), media_type=CONTENT_TYPE_LATEST)
