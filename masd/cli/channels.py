"""``masd channels``: the configured channels (通道) and, from the running daemon, whether each is up and the
rate it sends at now.

The configuration says what a channel may do; only the daemon knows its link and its current rate (lower
than configured while the carrier throttles, see :mod:`masd.core.pacing`), so the command asks the
daemon's ``/readyz`` on its HTTP port and says so when no daemon answers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import typer
from rich.table import Table

from masd.cli.common import ConfigOption, JsonOption, note, out, print_json, read_config

__all__ = ["channels_app"]

channels_app = typer.Typer(help="Channels (通道): each one's link and the rate it sends at now.")


def _daemon_state(listen: str, timeout: float = 3.0) -> dict[str, Any] | None:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as e:  # 503 while not ready still says how the channels are
        body = e.read()
    except (OSError, ValueError):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc.get("channels") if isinstance(doc, dict) else None


@channels_app.command("channels")
def channels(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """List the channels (通道列表): driver, kind, configured and current rate, window, link."""
    cfg = read_config(config)
    live = _daemon_state(cfg.http.listen) if cfg.http.enabled else None
    rows: list[dict[str, Any]] = []
    for name, ch in cfg.channels.items():
        state = (live or {}).get(name) or {}
        rows.append(
            {
                "channel": name,
                "driver": ch.driver,
                "kind": ch.kind,
                "configured_rate": ch.rate,
                "rate": state.get("rate"),
                "throttled": state.get("throttled"),
                "up": state.get("up"),
                "problem": state.get("problem"),
                "window": ch.window,
                "service_number": ch.service_number,
            }
        )
    if json_out:
        print_json({"daemon": live is not None, "channels": rows})
        return
    table = Table("channel", "driver", "kind", "link", "rate now", "configured", "window", "service number")
    for r in rows:
        link = "-" if r["up"] is None else "up" if r["up"] else "down"
        now = "-" if r["rate"] is None else f"{r['rate']:g}/s" + (" (throttled)" if r["throttled"] else "")
        table.add_row(
            r["channel"],
            r["driver"],
            r["kind"],
            link,
            now,
            f"{r['configured_rate']:g}/s",
            str(r["window"]),
            r["service_number"],
        )
    out.print(table)
    for r in rows:
        if r["problem"]:
            note(f"{r['channel']}: {r['problem']}", "red")
    if live is None:
        note(f"no daemon answered on {cfg.http.listen}: link and current rate unknown")
