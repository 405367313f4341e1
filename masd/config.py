"""Configuration: one TOML file, overridden by ``MASD_*`` environment variables.

The file is validated as a whole at start; an invalid key or value stops the daemon with a message
naming the key, the value given and what is allowed. ``MASD_SECTION__KEY=value`` overrides
``[section] key`` (double underscore separates levels; the value is read as TOML when it parses as
TOML, e.g. ``5`` or ``true`` or ``[1, 2]``, and as a plain string otherwise).
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from masd.core import signature as signature_rules

__all__ = ["ChannelConfig", "Config", "ConfigError", "load_config"]

ENV_PREFIX = "MASD_"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(_Section):
    name: str = Field("", description="node name used for queue leases; default: the host name")
    data_dir: str = Field("./data", description="directory for the SQLite database and simulator journals")


class StoreConfig(_Section):
    url: str = Field("", description="SQLAlchemy URL; default: SQLite file masd.db in node.data_dir")
    pool_size: int = Field(5, ge=1, le=100)
    group_commit_ms: float = Field(
        4.0, ge=0, le=1000, description="the most a write waits for company (less once masd is idle)"
    )
    group_commit_max: int = Field(1000, ge=1, le=100_000, description="most writes in one transaction")
    intake_rows_per_commit: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="most new deliveries in one transaction (other writes go first); 0: no limit",
    )
    readers: int = Field(4, ge=1, le=64, description="threads that may read at once")


class QueueConfig(_Section):
    max_pending: int = Field(
        2_000_000, ge=1, description="deliveries not yet final before new work is refused"
    )
    lease_seconds: float = Field(60.0, gt=0, le=86_400)
    claim_batch: int = Field(500, ge=1, le=10_000)
    poll_interval: float = Field(0.2, gt=0, le=60, description="idle wait between empty claims, seconds")
    claim_linger_ms: float = Field(
        0.0, ge=0, le=1000, description="after a part-filled claim, wait this long so the next claims more"
    )
    default_priority: int = Field(5, ge=0, le=9)
    validity_seconds: int = Field(
        48 * 3600, ge=1, le=30 * 86400, description="default validity period of a message (at most 30 days)"
    )
    max_attempts: int = Field(5, ge=1, le=100)
    retry_base_seconds: float = Field(5.0, gt=0)
    retry_max_seconds: float = Field(600.0, gt=0)
    max_segments: int = Field(10, ge=1, le=255)
    receipt_timeout_seconds: int = Field(72 * 3600, ge=1, description="submitted without receipt → expired")
    max_text_length: int = Field(2000, ge=1, le=100_000)


def _check_listen(v: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(
            "must be host:port with a port from 1 to 65535 (0: any free port), e.g. 127.0.0.1:8080"
        )
    return v


class HttpConfig(_Section):
    enabled: bool = True
    listen: str = Field("127.0.0.1:8080", description="host:port")
    server: Literal["builtin", "hypercorn"] = Field(
        "builtin",
        description="builtin: masd's own HTTP/1.1 server (about 3x Hypercorn's requests per second); "
        "hypercorn: Hypercorn's trio worker",
    )

    _listen = field_validator("listen")(_check_listen)


class IntakeConfig(_Section):
    workers: int = Field(
        0,
        ge=0,
        le=32,
        description="processes that serve POST /v1/messages and /v1/messages/batch on intake.listen, "
        "so that accepting messages and sending them use more than one core; 0: off",
    )
    listen: str = Field("127.0.0.1:8090", description="host:port the intake workers share")

    _listen = field_validator("listen")(_check_listen)


class SendConfig(_Section):
    workers: int = Field(
        0,
        ge=0,
        le=16,
        description="processes besides the daemon that claim and send on every channel, each with binds "
        "and a window of its own, so that sending uses more than one core; 0: off",
    )


class SocketConfig(_Section):
    enabled: bool = True
    listen: str = Field("127.0.0.1:9700", description="host:port of the NDJSON socket interface")
    max_unacked: int = Field(1000, ge=1, le=100_000, description="pushes in flight to one connection")
    send_buffer: int = Field(1000, ge=1, le=100_000, description="frames queued for one slow reader")
    max_frame_bytes: int = Field(
        65_536, ge=1024, le=16 * 1024 * 1024, description="longest frame a client may send, newline excluded"
    )
    pipeline: int = Field(100, ge=1, le=10_000, description="submits of one connection handled at once")
    login_timeout: float = Field(60.0, gt=0, le=3600, description="seconds a connection may take to log in")

    _listen = field_validator("listen")(_check_listen)


class RepliesConfig(_Section):
    window_hours: float = Field(
        72.0, ge=0, description="a reply goes to the app of the latest delivery to its sender within this"
    )
    keywords: dict[str, str] = Field(
        default_factory=dict, description='first word of a reply → app name, e.g. TD = "oa"'
    )


class EventsConfig(_Section):
    retention_days: float = Field(
        7.0, gt=0, description="receipt and reply events kept this long, read or not"
    )


class WebhooksConfig(_Section):
    enabled: bool = Field(True, description="send apps' events to their webhook_url (masd apps set)")
    max_attempts: int = Field(8, ge=1, le=100, description="attempts before an event is parked")
    backoff_seconds: float = Field(2.0, gt=0, description="first retry delay; doubles each attempt")
    backoff_max_seconds: float = Field(300.0, gt=0, description="the longest delay between two attempts")
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="one attempt's deadline, answer included")
    discover_seconds: float = Field(
        5.0, gt=0, le=3600, description="how often to look for apps whose webhook was set, changed or removed"
    )


class MeetingConfig(_Section):
    enabled: bool = Field(True, description="run the meeting module (会信通)")
    app: str = Field("meeting", description="the app the module sends as; created at start if missing")
    extension: str = Field(
        "9", pattern=r"^[0-9]{1,4}$", description="the module's extension; each meeting's id follows it"
    )
    signature: str = Field("", description="appended to every SMS, e.g. 【市政府办公室】")

    @field_validator("signature")
    @classmethod
    def _signature(cls, v: str) -> str:
        # Checked as a channel's is, so that a channel's own signature sees it and is not added twice.
        return signature_rules.check_signature(v) if v.strip() else ""

    second_sms_after_minutes: float | None = Field(
        60.0, ge=0, description="default delay of the second SMS to those who have not replied"
    )
    call_after_minutes: float | None = Field(
        30.0, ge=0, description="default delay, after the second SMS, of the call (mode sms+voice)"
    )
    remind_before_minutes: float | None = Field(
        60.0, ge=0, description="default: remind those attending this long before the start"
    )
    confirm_replies: bool = Field(
        True, description="confirm each answer recorded by SMS, saying how to correct it"
    )
    ask_back_limit: int = Field(
        3,
        ge=0,
        le=100,
        description="ask back at most this many times per attendee and meeting when a reply is unclear",
    )
    words: dict[str, list[str]] = Field(
        default_factory=dict,
        description="reply words by meaning (attend, decline, leave, checkin) replacing the defaults",
    )

    @field_validator("words")
    @classmethod
    def _meanings(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for k in v:
            if k not in ("attend", "decline", "leave", "checkin"):
                raise ValueError(f"{k!r} is not a reply meaning; use attend, decline, leave or checkin")
        if v:
            # The module's own check, made here so that the daemon stops at start naming the word:
            # words are read as replies are (參加 is 参加, ＯＫ is ok), and one word has one meaning
            # among the configured words and the defaults they leave in place.
            from masd.modules.meeting.grammar import Grammar, Kind

            Grammar({Kind(k): ws for k, ws in v.items()})
        return v


class DbPollConfig(_Section):
    url: str = Field(..., description="SQLAlchemy URL of the OA database holding api_mt_<code> etc.")
    app: str = Field(..., description="the app this interface acts as (masd apps create …)")
    dialect: Literal["mas"] = "mas"
    interval: float = Field(1.0, gt=0, le=3600, description="seconds between polls when idle")
    batch: int = Field(200, ge=1, le=10_000, description="rows claimed per poll")
    encoding: Literal["auto", "utf-8", "gbk"] = Field(
        "auto", description="CONTENT bytes: auto (UTF-8, else GBK), utf-8 or gbk"
    )


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


ResendState = Literal["undelivered", "expired", "rejected"]  # the receipt outcomes a resend may follow


class ChannelConfig(_Section):
    driver: str = Field(
        ...,
        description="entry point in the masd.channels group, e.g. sim or smpp; default: the channel's name",
    )
    kind: Literal["sms", "voice"] = Field(
        "sms", description="what the channel carries; apps are allowed kinds"
    )
    rate: float = Field(100.0, gt=0, description="messages per second this channel may send")
    window: int = Field(100, ge=1, le=10_000, description="submits in flight at once")
    prefixes: list[str] = Field(default_factory=list, description="recipient prefixes routed here")
    concat: Literal["udh8", "udh16", "sar", "payload"] = "udh8"
    service_number: str = Field("106570001", pattern=r"^[0-9]{1,21}$")
    options: dict[str, Any] = Field(default_factory=dict, description="driver-specific settings")
    resend_undelivered: int = Field(
        0,
        ge=0,
        le=10,
        description="resend a delivery this many times when its receipt says it failed (resend_states); "
        "0: never (an app's own setting, masd apps set NAME --resend N, overrides it)",
    )
    resend_delay_seconds: float = Field(300.0, ge=0, le=86_400, description="wait this long before a resend")
    resend_states: list[ResendState] = Field(
        default_factory=lambda: list[ResendState](["undelivered", "expired"]),
        description="the receipt outcomes that are resent",
    )
    resend_via: str | None = Field(
        None, description="resend through this channel (of the same kind) instead of this one"
    )
    backup: str | None = Field(
        None,
        description="a channel of the same kind that takes this one's queued deliveries while this one is "
        "down longer than failover_after_seconds, and gives them back when it is up again",
    )
    failover_after_seconds: float = Field(
        60.0, gt=0, le=86_400, description="how long the link must be down before the backup takes over"
    )
    signature: str = Field(
        "",
        description="the carrier signature every SMS on this channel carries, e.g. 【市政府办公室】; added "
        "unless the text (or the app's signature, masd apps set NAME --signature) has one already",
    )
    signature_position: Literal["front", "back"] = Field(
        "front", description="where the carrier wants the signature: at the front or the back of the text"
    )
    max_text_length: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="the most characters a text may have on this channel, its signature included; "
        "default: only queue.max_text_length",
    )

    @field_validator("signature")
    @classmethod
    def _signature(cls, v: str) -> str:
        return signature_rules.check_signature(v) if v.strip() else ""

    @field_validator("prefixes")
    @classmethod
    def _digits(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.lstrip("+").isdigit():
                raise ValueError(f"prefix {p!r} must be digits, optionally starting with +")
        return v


def _default_channels() -> dict[str, ChannelConfig]:
    return {"sim": ChannelConfig(driver="sim")}


class Config(_Section):
    node: NodeConfig = NodeConfig()
    store: StoreConfig = StoreConfig()
    queue: QueueConfig = QueueConfig()
    http: HttpConfig = HttpConfig()
    intake: IntakeConfig = IntakeConfig()
    send: SendConfig = SendConfig()
    socket: SocketConfig = SocketConfig()
    replies: RepliesConfig = RepliesConfig()
    events: EventsConfig = EventsConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    meeting: MeetingConfig = MeetingConfig()
    dbpoll: dict[str, DbPollConfig] = Field(default_factory=dict, description="interface code → OA database")
    log: LogConfig = LogConfig()
    channels: dict[str, ChannelConfig] = Field(default_factory=_default_channels)
    source: str = Field("", description="where this configuration was read from")

    @field_validator("channels")
    @classmethod
    def _some_channel(cls, v: dict[str, ChannelConfig]) -> dict[str, ChannelConfig]:
        if not v:
            raise ValueError("at least one [channels.NAME] section is needed")
        for name, ch in v.items():
            for key in ("resend_via", "backup"):
                other = getattr(ch, key)
                if other is None:
                    continue
                where = f"channels.{name}.{key} = {other!r}"
                if other == name:
                    raise ValueError(f"{where}: a channel cannot be its own {key.replace('_', ' ')}")
                if other not in v:
                    raise ValueError(f"{where}: no such channel; configured: {', '.join(v)}")
                if v[other].kind != ch.kind:
                    raise ValueError(f"{where}: that is a {v[other].kind} channel and this one is {ch.kind}")
        for name in v:
            # Backups of backups are allowed; a ring of them would hand deliveries round while all are down.
            seen = [name]
            nxt = v[name].backup
            while nxt is not None:
                if nxt in seen:
                    raise ValueError(
                        f"channels.{name}.backup: the backups form a ring ({' → '.join([*seen, nxt])})"
                    )
                seen.append(nxt)
                nxt = v[nxt].backup
        return v

    @field_validator("dbpoll")
    @classmethod
    def _codes(cls, v: dict[str, DbPollConfig]) -> dict[str, DbPollConfig]:
        for code in v:
            if not re.fullmatch(r"[A-Za-z0-9_]{1,32}", code):
                raise ValueError(
                    f"interface code {code!r} must be 1 to 32 letters, digits or _ (it names tables)"
                )
        return v

    @property
    def node_name(self) -> str:
        return self.node.name or socket.gethostname()

    @property
    def data_path(self) -> Path:
        return Path(self.node.data_dir).expanduser()

    @property
    def store_url(self) -> str:
        if self.store.url:
            return self.store.url
        return f"sqlite:///{(self.data_path / 'masd.db').resolve()}"


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == "MASD_CONFIG":
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if len(path) < 2:
            continue
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment {name}: {'.'.join(path[:-1])} is not a section")
            node = child
        node[path[-1]] = _parse_env_value(raw)


def _describe(err: ValidationError, data: Mapping[str, Any], source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (value {e['input']!r}); check its spelling and section")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required but missing")
        elif isinstance(e["input"], dict):
            # A section checked as a whole (e.g. channels naming each other): the message names the key.
            lines.append(f"  {key}: {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {key} = {e['input']!r}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or ``$MASD_CONFIG``; no file means built-in defaults), apply the environment."""
    env = os.environ if env is None else env
    path = path or env.get("MASD_CONFIG") or None
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if path:
        p = Path(path)
        source = str(p)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file {p} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"configuration file {p} is not valid TOML: {e}") from None
    _apply_env(data, env)
    channels = data.get("channels")
    if isinstance(channels, dict):
        # [channels.sim] needs no `driver = "sim"`: a channel named after a driver uses that driver.
        for name, ch in channels.items():
            if isinstance(ch, dict):
                ch.setdefault("driver", name)
    data["source"] = source
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, data, source)) from None
