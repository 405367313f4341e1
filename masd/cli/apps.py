"""``masd apps``: applications and their API keys (应用与密钥) — create one, change its limits,
scopes, extension, webhook, resends and signature, list them, revoke or rotate a key.

A key is shown once, when it is made; the store keeps only its hash. A running daemon caches keys for a
few seconds, so changes reach it that quickly.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from masd.cli.common import (
    ConfigOption,
    JsonOption,
    fail,
    jsonable,
    open_store,
    out,
    print_json,
    read_config,
    run_async,
)
from masd.core import apps as app_policy
from masd.core import signature as signature_rules
from masd.core.times import local_text
from masd.store import apps as app_store

__all__ = ["apps_app"]

apps_app = typer.Typer(help="Applications and their API keys (应用与密钥).", no_args_is_help=True)

KEY_NOTE = "store it now; masd keeps only its hash and cannot show it again"


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise typer.BadParameter("must be 1 to 64 characters", param_hint="NAME")
    return name


ChannelsOption = Annotated[
    str | None,
    typer.Option(
        "--channels",
        help="Kinds of channel the app may use (允许的通道), comma-separated: sms, voice. Default: all.",
        show_default=False,
    ),
]
RateOption = Annotated[
    str | None,
    typer.Option(
        "--rate",
        help="Most recipients per second (发送速率), e.g. 50/s, 600/min. Default: unlimited.",
        show_default=False,
    ),
]
QuotaOption = Annotated[
    str | None,
    typer.Option(
        "--quota",
        help="Most recipients per day (每日配额), e.g. 10000/day. Default: unlimited.",
        show_default=False,
    ),
]
ExtensionOption = Annotated[
    str | None,
    typer.Option(
        "--extension",
        help="Extension digits after the service number (扩展码); replies to it belong to this app.",
        show_default=False,
    ),
]
ScopeOption = Annotated[
    str | None,
    typer.Option(
        "--scope",
        help="Parts of the API the app may use (权限范围), comma-separated: "
        + ", ".join(app_policy.SCOPES)
        + "; contacts:write includes contacts:read; 'none' for none. On set, the list replaces the "
        "app's scopes, or +scope / -scope add or take away some. Default: "
        + ", ".join(sorted(app_policy.DEFAULT_SCOPES))
        + ".",
        show_default=False,
    ),
]
ResendOption = Annotated[
    str | None,
    typer.Option(
        "--resend",
        help="Resend a delivery whose receipt says it failed this many times (失败重发), 0 to "
        f"{app_policy.MAX_RESEND}, instead of its channel's resend_undelivered; 'none' uses the channel's.",
        show_default=False,
    ),
]
SignatureOption = Annotated[
    str | None,
    typer.Option(
        "--signature",
        help="The carrier signature the app's SMS texts carry (短信签名), e.g. 【市政府办公室】, at the "
        "front or back as its channel wants, instead of the channel's signature; 'none' uses the channel's.",
        show_default=False,
    ),
]
WebhookOption = Annotated[
    str | None,
    typer.Option(
        "--webhook",
        help="URL that receives the app's receipts and replies (回调地址), signed; '' removes it.",
        show_default=False,
    ),
]


def _app_settings(
    channels: str | None,
    rate: str | None,
    quota: str | None,
    extension: str | None,
    webhook: str | None,
    resend: str | None = None,
    signature: str | None = None,
) -> dict[str, Any]:
    """Options → stored settings. An empty value ('' or 'none') clears that limit."""
    settings: dict[str, Any] = {}

    def cleared(v: str) -> bool:
        return v.strip().lower() in ("", "none", "unlimited", "all")

    try:
        if channels is not None:
            settings["channels"] = None if cleared(channels) else app_policy.parse_channels(channels)
        if rate is not None:
            settings["rate"] = None if cleared(rate) else app_policy.parse_rate(rate)
        if quota is not None:
            settings["quota_per_day"] = None if cleared(quota) else app_policy.parse_quota(quota)
    except ValueError as e:
        opt = "--channels" if "channel" in str(e) else "--rate" if "rate" in str(e) else "--quota"
        raise typer.BadParameter(str(e), param_hint=opt) from None
    if resend is not None:
        try:
            settings["resend"] = None if cleared(resend) else app_policy.parse_resend(resend)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--resend") from None
    if signature is not None:
        try:
            settings["signature"] = None if cleared(signature) else signature_rules.check_signature(signature)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--signature") from None
    if extension is not None:
        ext = extension.strip()
        if ext and (not ext.isdigit() or len(ext) > 12):
            raise typer.BadParameter("must be 1 to 12 digits", param_hint="--extension")
        settings["extension"] = ext or None
    if webhook is not None:
        url = webhook.strip()
        if url and not re.match(r"^https?://[^\s/]+", url):
            raise typer.BadParameter("must be an http:// or https:// URL", param_hint="--webhook")
        settings["webhook_url"] = url or None
        settings["webhook_secret"] = secrets.token_hex(32) if url else None
    return settings


def _check_scope(scope: str | None) -> None:
    """Refuse an unknown scope before the store is opened (a usage error, exit 2)."""
    if scope is None:
        return
    try:
        app_policy.parse_scopes(scope)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--scope") from None


def _describe_scopes(stored: str | None) -> str:
    if stored is None:  # a row from before scopes
        return ", ".join(sorted(app_policy.DEFAULT_SCOPES))
    return stored.replace(",", ", ") if stored else "none"


def _describe_app(r: dict[str, Any]) -> dict[str, str]:
    ch = r.get("channels")
    quota = r.get("quota_per_day")
    return {
        "scopes": _describe_scopes(r.get("scopes")),
        "channels": ch.replace(",", ", ") if ch else "all",
        "rate": app_policy.format_rate(r.get("rate")),
        "quota": f"{quota}/day" if quota else "unlimited",
        "extension": r.get("extension") or "-",
        "webhook": r.get("webhook_url") or "-",
        "resend": "channel's" if r.get("resend") is None else str(r["resend"]),
        "signature": r.get("signature") or "channel's",
    }


def _print_settings(name: str, settings: dict[str, Any], as_json: bool, extra: dict[str, Any]) -> None:
    shown = _describe_app(settings)
    if as_json:
        data = {**extra, "name": name, **{k: settings.get(k) for k in app_store.SETTINGS}}
        print_json(data)
        return
    for k, v in shown.items():
        out.print(f"  {k:<10} {v}", markup=False, soft_wrap=True)
    if settings.get("webhook_secret"):
        out.print("webhook signing secret (签名密钥), shown once:", markup=False)
        out.print(settings["webhook_secret"], markup=False, soft_wrap=True)


@apps_app.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="A name for the application (应用名称), e.g. oa.")],
    channels: ChannelsOption = None,
    rate: RateOption = None,
    quota: QuotaOption = None,
    extension: ExtensionOption = None,
    webhook: WebhookOption = None,
    scope: ScopeOption = None,
    resend: ResendOption = None,
    signature: SignatureOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an application and print its API key once (创建应用).

    Example: masd apps create oa --channels sms,voice --rate 50/s --quota 10000/day --extension 01
    --scope messages,replies,contacts:read --resend 2 --signature 【市政府办公室】
    """
    name = _check_name(name)
    settings = _app_settings(channels, rate, quota, extension, webhook, resend, signature)
    _check_scope(scope)
    if scope is not None:
        settings["scopes"] = app_policy.parse_scopes(scope)
    # Without --scope the store writes the default scopes; show what it wrote.
    settings.setdefault("scopes", ",".join(sorted(app_policy.DEFAULT_SCOPES)))
    cfg = read_config(config)
    with open_store(cfg) as db:
        try:
            app_id, key = run_async(
                lambda: db.write(lambda c: app_store.create_app(c, name, now=time.time(), **settings))
            )
        except (app_store.AppExists, ValueError) as e:
            fail(str(e))
    if as_json:
        _print_settings(name, settings, True, {"id": app_id, "key": key})
        return
    out.print(f"created app {name!r} (id {app_id}); its API key (密钥):", markup=False, soft_wrap=True)
    out.print(key, markup=False, soft_wrap=True)
    out.print(KEY_NOTE, style="yellow", markup=False)
    _print_settings(name, settings, False, {})


@apps_app.command("set")
def apps_set(
    name: Annotated[str, typer.Argument(help="Application name.")],
    channels: ChannelsOption = None,
    rate: RateOption = None,
    quota: QuotaOption = None,
    extension: ExtensionOption = None,
    webhook: WebhookOption = None,
    scope: ScopeOption = None,
    resend: ResendOption = None,
    signature: SignatureOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change an application's limits, scopes, extension, webhook, resends or signature (修改应用设置);
    'none' clears a limit.

    Example: masd apps set oa --scope +contacts:read (or a whole list: --scope messages,contacts:write).
    A running daemon applies the change within a few seconds (it caches keys briefly)."""
    name = _check_name(name)
    settings = _app_settings(channels, rate, quota, extension, webhook, resend, signature)
    _check_scope(scope)
    if not settings and scope is None:
        fail(
            "nothing to change: give --channels, --rate, --quota, --scope, --extension, --webhook, "
            "--resend or --signature",
            2,
        )

    def change(c: Any) -> bool:
        if scope is not None:
            # +scope / -scope change what the app has now, read in the same transaction.
            found = app_store.get_app(c, name)
            if found is None:
                return False
            settings["scopes"] = app_policy.parse_scopes(scope, found.get("scopes"))
        return app_store.update_app(c, name, **settings)

    cfg = read_config(config)
    with open_store(cfg) as db:
        try:
            ok = run_async(lambda: db.write(change))
        except ValueError as e:
            fail(str(e))
        row = run_async(lambda: db.read(lambda c: app_store.get_app(c, name))) if ok else None
    if not ok or row is None:
        fail(f"no active app named {name!r}")
    if not as_json:
        out.print(f"app {name!r} now:", markup=False, soft_wrap=True)
    # The secret is shown only when this command made it.
    row["webhook_secret"] = settings.get("webhook_secret")
    _print_settings(name, row, as_json, {"id": row["id"]})


@apps_app.command("list")
def apps_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List applications (应用列表) with their limits; keys are never shown, only their first characters."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        rows = run_async(lambda: db.read(app_store.list_apps))
    if as_json:
        print_json(jsonable(rows))
        return
    if not rows:
        out.print("no apps; 'masd apps create NAME' makes one")
        return
    table = Table(show_edge=False)
    cols = (
        "id",
        "name",
        "key starts",
        "scopes",
        "channels",
        "rate",
        "quota",
        "extension",
        "webhook",
        "resend",
        "signature",
        "created",
        "status",
    )
    for col in cols:
        table.add_column(col, no_wrap=col not in ("name", "scopes", "webhook"))
    for r in rows:
        revoked = r.get("revoked_at")
        d = _describe_app(r)
        table.add_row(
            str(r["id"]),
            Text(r["name"]),
            r["key_prefix"] + "…",
            d["scopes"],
            d["channels"],
            d["rate"],
            d["quota"],
            d["extension"],
            Text(d["webhook"]),
            d["resend"],
            Text(d["signature"]),
            local_text(r["created_at"]),
            Text(f"revoked {local_text(revoked)}", style="dim") if revoked else Text("active", style="green"),
        )
    out.print(table)


@apps_app.command("revoke")
def apps_revoke(
    name: Annotated[str, typer.Argument(help="Application name.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an application's key (吊销); requests with it are refused from now on."""
    name = _check_name(name)
    cfg = read_config(config)
    with open_store(cfg) as db:
        ok = run_async(lambda: db.write(lambda c: app_store.revoke_app(c, name, now=time.time())))
    if not ok:
        fail(f"no active app named {name!r}")
    if as_json:
        print_json({"name": name, "revoked": True})
    else:
        out.print(f"revoked app {name!r}; its key no longer works", markup=False, soft_wrap=True)


@apps_app.command("rotate")
def apps_rotate(
    name: Annotated[str, typer.Argument(help="Application name.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give an application a new key (更换密钥); the old one stops working at once."""
    name = _check_name(name)
    cfg = read_config(config)
    with open_store(cfg) as db:
        key = run_async(lambda: db.write(lambda c: app_store.rotate_key(c, name)))
    if key is None:
        fail(f"no active app named {name!r}")
    if as_json:
        print_json({"name": name, "key": key})
        return
    out.print(f"new API key for {name!r} (the old one no longer works):", markup=False, soft_wrap=True)
    out.print(key, markup=False, soft_wrap=True)
    out.print(KEY_NOTE, style="yellow", markup=False)
