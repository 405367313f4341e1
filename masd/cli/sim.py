"""``masd sim``: simulators (模拟器) to run masd against without a carrier account.

``masd sim smsc`` runs the simulated SMSC of :mod:`masd_adapters.smpp.smsc`, a real SMPP 3.4 server,
until Ctrl-C or SIGTERM (then exit 0). ``masd sim mo`` makes that running SMSC send a mobile-originated
message (上行短信) to whoever is bound, and ``masd sim stats`` shows its counters; both talk to its
control port (newline-delimited JSON on 127.0.0.1, described in that module).

``masd sim ismg`` runs the simulated China Mobile ISMG of :mod:`masd_adapters.cmpp.ismg`, a real CMPP
2.0/3.0 server (port 7890, control port 7891), the same way; ``masd sim ismg-mo`` and ``masd sim
ismg-stats`` are its ``mo`` and ``stats``.

``masd sim smg`` runs the simulated China Unicom SMG of :mod:`masd_adapters.sgip.smg`, a real SGIP 1.2
server (port 8801, control port 8803) that connects back to the SP's listener (127.0.0.1:8802) with its
Reports and MOs; ``masd sim smg-mo`` and ``masd sim smg-stats`` are its ``mo`` and ``stats``.

``masd sim smgw`` runs the simulated China Telecom SMGW of :mod:`masd_adapters.smgp.smgw`, a real SMGP
3.0 server (port 8890, control port 8891), the same way; ``masd sim smgw-mo`` and ``masd sim
smgw-stats`` are its ``mo`` and ``stats``.

As everywhere in masd's CLI, results go to stdout (one JSON document with ``--json``), notes and errors to
stderr; exit codes are 0 success, 1 failure (port in use, SMSC not reachable, request refused), 2 usage.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import trio
import typer

__all__ = ["sim_app"]

sim_app = typer.Typer(
    help="Simulators (模拟器): a simulated SMPP SMSC, and mobile-originated messages sent through it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (机器可读输出).")]
HostOption = Annotated[str, typer.Option("--host", help="Where the SMSC's control port listens.")]
ControlPortOption = Annotated[
    int, typer.Option("--control-port", help="The SMSC's control port (its SMPP port + 1 by default).")
]
# Options two or more simulators share, word for word.
TextOption = Annotated[str, typer.Option("--text", help="The message text.")]
ShuffleOption = Annotated[bool, typer.Option("--shuffle", help="Send the parts out of order.")]
ConcatOption = Annotated[
    str, typer.Option("--concat", help="UDH of a long text: udh8 (05 00 03) or udh16 (06 08 04).")
]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Seed for delays, outcomes and ids.")]
ReportDelayOption = Annotated[
    str, typer.Option("--report-delay", help="Seconds until a report: '1.5', or a range '0.5-2'.")
]
DisconnectAfterOption = Annotated[
    float, typer.Option("--disconnect-after", help="Drop each session this many s after login; 0 = off.")
]
ActiveTestTimeoutOption = Annotated[
    float, typer.Option("--active-test-timeout", help="Drop a session not answering within this (s).")
]
ReportResendOption = Annotated[
    float, typer.Option("--resend-after", help="Send a report again if unanswered this long (s).")
]
LoginLogLevelOption = Annotated[
    str, typer.Option("--log-level", help="debug, info (logins and drops) or warning.")
]
BindLogLevelOption = Annotated[
    str, typer.Option("--log-level", help="debug, info (binds and drops) or warning.")
]
SmscTimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the SMSC.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def _control_settings(control_port: int | None) -> dict[str, Any]:
    """``--control-port`` as a simulator's settings: -1 serves none, None the default port."""
    return {
        "control": control_port != -1,
        "control_port": None if control_port in (None, -1) else control_port,
    }


def _serve(
    server: Any,
    *,
    host: str,
    port: int,
    log_level: str,
    as_json: bool,
    shown: dict[str, Any],
    serving: str,
    then: str,
    stopped: Callable[[], str],
) -> None:
    """Run the simulated ``server`` (its ``serve``, ``port``, ``control_port`` and ``config.control``)
    until SIGINT or SIGTERM. Once it listens: with ``--json`` one document of its host, ports and
    ``shown``, else the line "``serving`` on HOST:PORT, control on …; ``then``"; when it stops,
    ``stopped()`` on stderr. Exits 1 naming the file or the port when it cannot start."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.WARNING),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(server.serve)
                if as_json:
                    _print_json(
                        {
                            "host": host,
                            "port": server.port,
                            "control_port": server.control_port or None,
                            **shown,
                        }
                    )
                else:
                    control = f", control on 127.0.0.1:{server.control_port}" if server.config.control else ""
                    typer.echo(f"{serving} on {host}:{server.port}{control}; {then}")
                    sys.stdout.flush()
                async for signum in signals:
                    typer.echo(f"{signal.Signals(signum).name}: stopping", err=True)
                    break
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        # Failures to start (port in use, record file not writable) come wrapped in exception groups.
        problem = next((leaf for leaf in _leaves(e) if isinstance(leaf, OSError)), None)
        if problem is None:
            raise
        if problem.filename:
            _fail(f"cannot open {problem.filename}: {problem.strerror or problem}")
        _fail(f"cannot listen on {host}:{port} or its control port: {problem.strerror or problem}")
    typer.echo(stopped(), err=True)


@sim_app.command()
def smsc(
    host: Annotated[str, typer.Option("--host", help="Address to listen on for SMPP.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="SMPP port; 0 picks a free one.")] = 2775,
    account: Annotated[
        list[str] | None,
        typer.Option(
            "--account", help=r"system_id:password an ESME may bind with; repeatable. \[default: masd:masd]"
        ),
    ] = None,
    receipt_delay: Annotated[
        str, typer.Option("--receipt-delay", help="Seconds until a receipt: '1.5', or a range '0.5-2'.")
    ] = "0.1-1",
    outcomes: Annotated[
        str,
        typer.Option(
            "--outcomes",
            help="Receipt outcome weights, e.g. 'delivered=0.95,undelivered=0.05'; names: delivered, "
            "undelivered, expired, rejected, deleted, unknown, none (no receipt at all).",
        ),
    ] = "delivered=1",
    throttle_every: Annotated[
        int, typer.Option("--throttle-every", help="Answer every Nth submit_sm of a bind 0x58; 0 = off.")
    ] = 0,
    throttle_above: Annotated[
        float,
        typer.Option("--throttle-above", help="Answer 0x58 above this many submits/s per bind; 0 = off."),
    ] = 0.0,
    disconnect_every: Annotated[
        int,
        typer.Option("--disconnect-every", help="Drop a connection when its Nth PDU arrives; 0 = off."),
    ] = 0,
    reject_prefix: Annotated[
        list[str] | None,
        typer.Option("--reject-prefix", help="Refuse destinations starting with this (0x0B); repeatable."),
    ] = None,
    id_format: Annotated[str, typer.Option("--id-format", help="Message ids: hex or decimal.")] = "hex",
    receipt_text_case: Annotated[
        str, typer.Option("--receipt-text-case", help="Receipt text keys: lower (id:, stat:) or upper.")
    ] = "lower",
    receipt_text_id: Annotated[
        str,
        typer.Option("--receipt-text-id", help="Id in the receipt text: same, or decimal (of a hex id)."),
    ] = "same",
    no_receipt_tlvs: Annotated[
        bool,
        typer.Option("--no-receipt-tlvs", help="Leave receipted_message_id/message_state TLVs out."),
    ] = False,
    enquire_link: Annotated[
        float,
        typer.Option("--enquire-link", help="Seconds between the SMSC's own enquire_link; 0 = never."),
    ] = 30.0,
    resend_after: Annotated[
        float, typer.Option("--resend-after", help="Send a receipt again if unanswered this long (s).")
    ] = 10.0,
    max_binds: Annotated[
        int, typer.Option("--max-binds", help="Binds allowed per system_id; 0 = no limit.")
    ] = 0,
    deliver_window: Annotated[
        int,
        typer.Option("--deliver-window", help="deliver_sm (receipts, replies) unanswered at once per bind."),
    ] = 100,
    record: Annotated[
        Path | None, typer.Option("--record", help="Append every submit_sm received to this JSONL file.")
    ] = None,
    seed: SeedOption = None,
    control_port: Annotated[
        int | None,
        typer.Option("--control-port", help="Control port (JSON lines); default SMPP port + 1; -1 = none."),
    ] = None,
    log_level: BindLogLevelOption = "warning",
    as_json: JsonOption = False,
) -> None:
    """Run a simulated SMPP 3.4 SMSC (模拟短信中心) until Ctrl-C or SIGTERM."""
    from masd_adapters.smpp.smsc import Smsc, SmscConfig, account_list, parse_delay, parse_outcomes

    try:
        config = SmscConfig(
            host=host,
            port=port,
            accounts=account_list(account or ["masd:masd"]),
            id_format=id_format,  # type: ignore[arg-type]  # checked by SmscConfig
            receipt_delay=parse_delay(receipt_delay),
            outcomes=parse_outcomes(outcomes),
            receipt_text_case=receipt_text_case,  # type: ignore[arg-type]
            receipt_text_id=receipt_text_id,  # type: ignore[arg-type]
            receipt_tlvs=not no_receipt_tlvs,
            throttle_every=throttle_every,
            throttle_above_rate=throttle_above,
            disconnect_every=disconnect_every,
            reject_prefixes=tuple(reject_prefix or ()),
            seed=seed,
            record=record,
            **_control_settings(control_port),
            max_binds=max_binds,
            enquire_link_interval=enquire_link,
            receipt_resend_after=resend_after,
            deliver_window=deliver_window,
        )
    except ValueError as e:
        _fail(f"invalid option: {e}", 2)
    server = Smsc(config)

    def stopped() -> str:
        stats = server.stats
        return (
            f"stopped: {stats.submits} submits ({stats.throttled} throttled, {stats.rejected} rejected), "
            f"{stats.receipts_acked} receipts acknowledged, {stats.receipts_pending} pending, "
            f"{stats.mo_acked} MO acknowledged"
        )

    _serve(
        server,
        host=host,
        port=port,
        log_level=log_level,
        as_json=as_json,
        shown={"accounts": sorted(config.accounts)},
        serving="masd sim smsc: SMPP",
        then=f"accounts: {', '.join(sorted(config.accounts))}",
        stopped=stopped,
    )


def _stopped(stats: Any) -> str:
    """The stop line of a simulator counting reports (the ISMG's, the SMG's)."""
    return (
        f"stopped: {stats.submits} submits ({stats.throttled} throttled, {stats.rejected} rejected), "
        f"{stats.reports_acked} reports acknowledged, {stats.reports_pending} pending, "
        f"{stats.mo_acked} MO acknowledged"
    )


def _control(host: str, port: int, request: dict[str, Any], timeout: float, what: str) -> dict[str, Any]:
    """One request to the control port of the simulated ``what``; exits 1 when it cannot be reached or
    sends no valid answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(json.dumps(request, ensure_ascii=False).encode() + b"\n")
            buf = b""
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError as e:
        _fail(f"cannot reach the {what} control port {host}:{port}: {e.strerror or e}")
    try:
        answer = json.loads(buf.partition(b"\n")[0])
    except ValueError:
        _fail(f"the {what} control port {host}:{port} sent no valid answer")
    if not isinstance(answer, dict):
        _fail(f"the {what} control port {host}:{port} sent no valid answer")
    return answer


def _send_mo(host: str, port: int, request: dict[str, Any], timeout: float, what: str, as_json: bool) -> None:
    """Send the ``mo`` request to the simulated ``what``'s control port and say how many parts went."""
    answer = _control(host, port, request, timeout, what)
    if as_json:
        _print_json(answer)
    if not answer.get("ok"):
        _fail(f"the {what} refused: {answer.get('error', 'no reason given')}")
    if not as_json:
        parts = answer.get("parts")
        typer.echo(
            f"MO from {request['from']} to {request['to']}: {parts} part{'' if parts == 1 else 's'} sent"
        )


def _show_stats(host: str, port: int, timeout: float, what: str, as_json: bool) -> None:
    """Print the counters of the simulated ``what`` behind that control port, a line each (or JSON)."""
    answer = _control(host, port, {"op": "stats"}, timeout, what)
    if not answer.get("ok"):
        _fail(f"the {what} refused: {answer.get('error', 'no reason given')}")
    counters = answer.get("stats", {})
    if as_json:
        _print_json(counters)
        return
    width = max(map(len, counters), default=0)
    for key, value in counters.items():
        typer.echo(f"{key:<{width}}  {value}")


@sim_app.command()
def mo(
    sender: Annotated[str, typer.Option("--from", help="The handset's number (主叫号码).")],
    destination: Annotated[str, typer.Option("--to", help="The service number, extension included.")],
    text: TextOption,
    split: Annotated[
        str, typer.Option("--split", help="How a long text is concatenated: udh8, udh16, sar or payload.")
    ] = "udh8",
    system_id: Annotated[
        str | None, typer.Option("--system-id", help="Deliver to binds of this account.")
    ] = None,
    shuffle: ShuffleOption = False,
    host: HostOption = "127.0.0.1",
    control_port: ControlPortOption = 2776,
    timeout: SmscTimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Make a running simulated SMSC send a mobile-originated message (模拟上行短信)."""
    request: dict[str, Any] = {"op": "mo", "from": sender, "to": destination, "text": text, "split": split}
    if system_id is not None:
        request["system_id"] = system_id
    if shuffle:
        request["shuffle"] = True
    _send_mo(host, control_port, request, timeout, "SMSC", as_json)


@sim_app.command()
def stats(
    host: HostOption = "127.0.0.1",
    control_port: ControlPortOption = 2776,
    timeout: SmscTimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Show a running simulated SMSC's counters (统计)."""
    _show_stats(host, control_port, timeout, "SMSC", as_json)


IsmgControlPortOption = Annotated[
    int, typer.Option("--control-port", help="The ISMG's control port (its CMPP port + 1 by default).")
]
IsmgTimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the ISMG.")]


@sim_app.command()
def ismg(
    host: Annotated[str, typer.Option("--host", help="Address to listen on for CMPP.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="CMPP port; 0 picks a free one.")] = 7890,
    version: Annotated[
        str, typer.Option("--version", help="Highest CMPP version spoken: 3.0 (takes 2.x too) or 2.0.")
    ] = "3.0",
    account: Annotated[
        list[str] | None,
        typer.Option(
            "--account",
            help=r"sp_id:secret an SP may CONNECT with (sp_id 6 characters); repeatable. "
            r"\[default: 901234:secret]",
        ),
    ] = None,
    ismg_code: Annotated[
        int, typer.Option("--ismg-code", help="The ISMG code (22 bits) in every Msg_Id.")
    ] = 10086,
    report_delay: ReportDelayOption = "0.1-1",
    outcomes: Annotated[
        str,
        typer.Option(
            "--outcomes",
            help="Report outcome weights, e.g. 'delivered=0.9,undelivered=0.05,expired=0.05'; names: "
            "delivered, undelivered, expired, rejected, deleted, unknown, none (no report), or a carrier "
            "Stat such as MK:0005.",
        ),
    ] = "delivered=1",
    short_reports: Annotated[
        bool, typer.Option("--short-reports", help="60-octet reports on 3.0 sessions too (as gocmpp).")
    ] = False,
    throttle_every: Annotated[
        int,
        typer.Option("--throttle-every", help="Answer every Nth SUBMIT of a connection Result 8; 0 = off."),
    ] = 0,
    throttle_above: Annotated[
        float,
        typer.Option("--throttle-above", help="Answer Result 8 above this many SUBMITs/s per connection."),
    ] = 0.0,
    disconnect_every: Annotated[
        int, typer.Option("--disconnect-every", help="Drop a connection at its Nth SUBMIT; 0 = off.")
    ] = 0,
    disconnect_after: DisconnectAfterOption = 0.0,
    active_test: Annotated[
        float, typer.Option("--active-test", help="Seconds between the ISMG's own ACTIVE_TEST; 0 = never.")
    ] = 180.0,
    active_test_timeout: ActiveTestTimeoutOption = 60.0,
    resend_after: ReportResendOption = 60.0,
    deliver_window: Annotated[
        int, typer.Option("--deliver-window", help="DELIVERs (reports, MOs) unanswered at once per session.")
    ] = 16,
    record: Annotated[
        Path | None,
        typer.Option("--record", help="Append every CONNECT and SUBMIT received to this JSONL file."),
    ] = None,
    seed: SeedOption = None,
    control_port: Annotated[
        int | None,
        typer.Option("--control-port", help="Control port (JSON lines); default CMPP port + 1; -1 = none."),
    ] = None,
    log_level: LoginLogLevelOption = "warning",
    as_json: JsonOption = False,
) -> None:
    """Run a simulated China Mobile ISMG (模拟移动网关, CMPP 2.0/3.0) until Ctrl-C or SIGTERM."""
    from masd_adapters.cmpp.ismg import Ismg, IsmgConfig, account_list, parse_delay, parse_outcomes

    try:
        config = IsmgConfig(
            host=host,
            port=port,
            version=version,  # type: ignore[arg-type]  # parsed by IsmgConfig
            accounts=account_list(account or ["901234:secret"]),
            ismg_code=ismg_code,
            report_delay=parse_delay(report_delay),
            outcomes=parse_outcomes(outcomes),
            short_reports=short_reports,
            throttle_every=throttle_every,
            throttle_above_rate=throttle_above,
            disconnect_every=disconnect_every,
            disconnect_after=disconnect_after,
            active_test_interval=active_test,
            active_test_timeout=active_test_timeout,
            report_resend_after=resend_after,
            deliver_window=deliver_window,
            seed=seed,
            record=record,
            **_control_settings(control_port),
        )
    except ValueError as e:
        _fail(f"invalid option: {e}", 2)
    server = Ismg(config)
    shown_version = config.public()["version"]
    _serve(
        server,
        host=host,
        port=port,
        log_level=log_level,
        as_json=as_json,
        shown={
            "version": shown_version,
            "ismg_code": config.ismg_code,
            # A simulator's test credentials, printed so that an SP can be pointed at it.
            "accounts": dict(sorted(config.accounts.items())),
        },
        serving=f"masd sim ismg: CMPP {shown_version}",
        then="accounts (sp_id:secret): "
        + ", ".join(f"{sp}:{secret}" for sp, secret in sorted(config.accounts.items())),
        stopped=lambda: _stopped(server.stats),
    )


@sim_app.command("ismg-mo")
def ismg_mo(
    sender: Annotated[str, typer.Option("--from", help="The handset's number (Src_terminal_Id, 主叫号码).")],
    destination: Annotated[
        str, typer.Option("--to", help="Dest_Id: the service code and extension (e.g. 1065712345001).")
    ],
    text: TextOption,
    msg_fmt: Annotated[
        int | None,
        typer.Option("--msg-fmt", help="0 ASCII, 8 UCS-2 or 15 GBK. \\[default: 0 for ASCII, else 8]"),
    ] = None,
    concat: ConcatOption = "udh8",
    sp_id: Annotated[str | None, typer.Option("--sp-id", help="Deliver to sessions of this account.")] = None,
    link_id: Annotated[str, typer.Option("--link-id", help="LinkID (3.0 sessions only).")] = "",
    service_id: Annotated[str, typer.Option("--service-id", help="Service_Id of the DELIVER.")] = "",
    shuffle: ShuffleOption = False,
    host: HostOption = "127.0.0.1",
    control_port: IsmgControlPortOption = 7891,
    timeout: IsmgTimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Make a running simulated ISMG send a mobile-originated message (模拟上行短信) over CMPP."""
    request: dict[str, Any] = {
        "op": "mo",
        "from": sender,
        "to": destination,
        "text": text,
        "concat": concat,
        "link_id": link_id,
        "service_id": service_id,
    }
    if msg_fmt is not None:
        request["msg_fmt"] = msg_fmt
    if sp_id is not None:
        request["sp_id"] = sp_id
    if shuffle:
        request["shuffle"] = True
    _send_mo(host, control_port, request, timeout, "ISMG", as_json)


@sim_app.command("ismg-stats")
def ismg_stats(
    host: HostOption = "127.0.0.1",
    control_port: IsmgControlPortOption = 7891,
    timeout: IsmgTimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Show a running simulated ISMG's counters (统计)."""
    _show_stats(host, control_port, timeout, "ISMG", as_json)


SmgwControlPortOption = Annotated[
    int, typer.Option("--control-port", help="The SMGW's control port (its SMGP port + 1 by default).")
]
SmgwTimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the SMGW.")]


@sim_app.command()
def smgw(
    host: Annotated[str, typer.Option("--host", help="Address to listen on for SMGP.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="SMGP port; 0 picks a free one.")] = 8890,
    account: Annotated[
        list[str] | None,
        typer.Option(
            "--account",
            help=r"client_id:secret an SP may Login with (client_id up to 8 characters); repeatable. "
            r"\[default: 10690001:secret]",
        ),
    ] = None,
    smgw_code: Annotated[
        int, typer.Option("--smgw-code", help="The 6-digit SMGW code in every MsgID (area code + 06 + n).")
    ] = 10601,
    report_delay: ReportDelayOption = "0.1-1",
    outcomes: Annotated[
        str,
        typer.Option(
            "--outcomes",
            help="Report outcome weights, e.g. 'delivered=0.9,undelivered=0.05,expired=0.05'; names: "
            "delivered, undelivered, expired, rejected, deleted, unknown, none (no report), or a gateway's "
            "own stat word.",
        ),
    ] = "delivered=1",
    quiet_hours: Annotated[
        bool,
        typer.Option("--quiet-hours", help="Answer every Submit Status 74 (sending banned in this window)."),
    ] = False,
    banned_every: Annotated[
        int, typer.Option("--banned-every", help="Answer every Nth Submit of a connection 74; 0 = off.")
    ] = 0,
    daily_limit: Annotated[
        int, typer.Option("--daily-limit", help="Submits accepted per account per day before 75; 0 = none.")
    ] = 0,
    busy_every: Annotated[
        int, typer.Option("--busy-every", help="Answer every Nth Submit of a connection 1 (busy); 0 = off.")
    ] = 0,
    busy_above: Annotated[
        float, typer.Option("--busy-above", help="Answer Status 1 above this many Submits/s per connection.")
    ] = 0.0,
    disconnect_every: Annotated[
        int, typer.Option("--disconnect-every", help="Drop a connection at its Nth Submit; 0 = off.")
    ] = 0,
    disconnect_after: DisconnectAfterOption = 0.0,
    active_test: Annotated[
        float, typer.Option("--active-test", help="Seconds between the SMGW's own Active_Test; 0 = never.")
    ] = 180.0,
    active_test_timeout: ActiveTestTimeoutOption = 60.0,
    resend_after: ReportResendOption = 60.0,
    deliver_window: Annotated[
        int, typer.Option("--deliver-window", help="Delivers (reports, MOs) unanswered at once per session.")
    ] = 16,
    record: Annotated[
        Path | None,
        typer.Option("--record", help="Append every Login and Submit received to this JSONL file."),
    ] = None,
    seed: SeedOption = None,
    control_port: Annotated[
        int | None,
        typer.Option("--control-port", help="Control port (JSON lines); default SMGP port + 1; -1 = none."),
    ] = None,
    log_level: LoginLogLevelOption = "warning",
    as_json: JsonOption = False,
) -> None:
    """Run a simulated China Telecom SMGW (模拟电信网关, SMGP 3.0) until Ctrl-C or SIGTERM."""
    from masd_adapters.smgp.smgw import Smgw, SmgwConfig, account_list, parse_delay, parse_outcomes

    try:
        config = SmgwConfig(
            host=host,
            port=port,
            accounts=account_list(account or ["10690001:secret"]),
            smgw_code=smgw_code,
            report_delay=parse_delay(report_delay),
            outcomes=parse_outcomes(outcomes),
            quiet_hours=quiet_hours,
            banned_every=banned_every,
            daily_limit=daily_limit,
            busy_every=busy_every,
            busy_above_rate=busy_above,
            disconnect_every=disconnect_every,
            disconnect_after=disconnect_after,
            active_test_interval=active_test,
            active_test_timeout=active_test_timeout,
            report_resend_after=resend_after,
            deliver_window=deliver_window,
            seed=seed,
            record=record,
            **_control_settings(control_port),
        )
    except ValueError as e:
        _fail(f"invalid option: {e}", 2)
    server = Smgw(config)

    def stopped() -> str:
        stats = server.stats
        return (
            f"stopped: {stats.submits} submits ({stats.banned} banned, {stats.over_daily_limit} over the "
            f"daily limit, {stats.busy} busy, {stats.rejected} rejected), {stats.reports_acked} reports "
            f"acknowledged, {stats.reports_pending} pending, {stats.mo_acked} MO acknowledged"
        )

    _serve(
        server,
        host=host,
        port=port,
        log_level=log_level,
        as_json=as_json,
        shown={
            "smgw_code": config.smgw_code,
            # A simulator's test credentials, printed so that an SP can be pointed at it.
            "accounts": dict(sorted(config.accounts.items())),
        },
        serving="masd sim smgw: SMGP 3.0",
        then="accounts (client_id:secret): "
        + ", ".join(f"{cid}:{secret}" for cid, secret in sorted(config.accounts.items())),
        stopped=stopped,
    )


@sim_app.command("smgw-mo")
def smgw_mo(
    sender: Annotated[str, typer.Option("--from", help="The handset's number (SrcTermID, 主叫号码).")],
    destination: Annotated[
        str, typer.Option("--to", help="DestTermID: the service code and extension (e.g. 106590123401).")
    ],
    text: TextOption,
    msg_format: Annotated[
        int | None,
        typer.Option("--msg-format", help="0 ASCII, 8 UCS-2 or 15 GB18030. \\[default: 0 for ASCII, else 8]"),
    ] = None,
    concat: ConcatOption = "udh8",
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="Deliver to sessions of this account.")
    ] = None,
    shuffle: ShuffleOption = False,
    host: HostOption = "127.0.0.1",
    control_port: SmgwControlPortOption = 8891,
    timeout: SmgwTimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Make a running simulated SMGW send a mobile-originated message (模拟上行短信) over SMGP."""
    request: dict[str, Any] = {"op": "mo", "from": sender, "to": destination, "text": text, "concat": concat}
    if msg_format is not None:
        request["msg_format"] = msg_format
    if client_id is not None:
        request["client_id"] = client_id
    if shuffle:
        request["shuffle"] = True
    _send_mo(host, control_port, request, timeout, "SMGW", as_json)


@sim_app.command("smgw-stats")
def smgw_stats(
    host: HostOption = "127.0.0.1",
    control_port: SmgwControlPortOption = 8891,
    timeout: SmgwTimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Show a running simulated SMGW's counters (统计)."""
    _show_stats(host, control_port, timeout, "SMGW", as_json)


SmgControlPortOption = Annotated[
    int, typer.Option("--control-port", help="The SMG's control port (its SGIP port + 2 by default).")
]
SmgTimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the SMG.")]


@sim_app.command()
def smg(
    host: Annotated[str, typer.Option("--host", help="Address to listen on for SGIP.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="SGIP port; 0 picks a free one.")] = 8801,
    account: Annotated[
        list[str] | None,
        typer.Option(
            "--account",
            help=r"login_name:password an SP may Bind with; repeatable. \[default: sp:secret]",
        ),
    ] = None,
    callback: Annotated[
        str,
        typer.Option("--callback", help="HOST:PORT of the SP's listener, for Reports and MOs ('' = none)."),
    ] = "127.0.0.1:8802",
    callback_login: Annotated[
        str, typer.Option("--callback-login", help="login_name:password the SMG binds to the SP with.")
    ] = "smg:secret",
    node_id: Annotated[int, typer.Option("--node-id", help="The SMG's node id in its Sequence Numbers.")] = (
        2010000001
    ),
    report_delay: Annotated[
        str, typer.Option("--report-delay", help="Seconds until a Report: '1.5', or a range '0.5-2'.")
    ] = "0.1-1",
    outcomes: Annotated[
        str,
        typer.Option(
            "--outcomes",
            help="Report outcome weights, e.g. 'delivered=0.9,failed=0.05,29=0.05'; names: delivered, "
            "failed (ErrorCode 28), waiting (State 1, then delivered), none, or an ErrorCode.",
        ),
    ] = "delivered=1",
    throttle_every: Annotated[
        int, typer.Option("--throttle-every", help="Answer every Nth Submit of a connection Result 11.")
    ] = 0,
    throttle_result: Annotated[
        int, typer.Option("--throttle-result", help="The Result of a throttled Submit (11 or 33).")
    ] = 11,
    disconnect_every: Annotated[
        int, typer.Option("--disconnect-every", help="Cut a connection at its Nth Submit; 0 = off.")
    ] = 0,
    idle_timeout: Annotated[
        float, typer.Option("--idle-timeout", help="Unbind an SP connection silent this long (s); 0 = never.")
    ] = 0.0,
    resend_after: Annotated[
        float, typer.Option("--resend-after", help="Send a Report or MO again if unanswered this long (s).")
    ] = 60.0,
    record: Annotated[
        Path | None,
        typer.Option("--record", help="Append every Bind and Submit received to this JSONL file."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for delays and outcomes.")] = None,
    control_port: Annotated[
        int | None,
        typer.Option("--control-port", help="Control port (JSON lines); default SGIP port + 2; -1 = none."),
    ] = None,
    log_level: BindLogLevelOption = "warning",
    as_json: JsonOption = False,
) -> None:
    """Run a simulated China Unicom SMG (模拟联通网关, SGIP 1.2) until Ctrl-C or SIGTERM."""
    from masd_adapters.sgip.smg import Smg, SmgConfig, account_list, parse_outcomes
    from masd_adapters.sgip.smg import parse_delay as parse_smg_delay

    cb_name, sep, cb_password = callback_login.partition(":")
    try:
        if not sep or not cb_name:
            raise ValueError(f"--callback-login {callback_login!r} is not login_name:password")
        config = SmgConfig(
            host=host,
            port=port,
            accounts=account_list(account or ["sp:secret"]),
            node_id=node_id,
            callback=callback,
            callback_login_name=cb_name,
            callback_password=cb_password,
            report_delay=parse_smg_delay(report_delay),
            outcomes=parse_outcomes(outcomes),
            throttle_every=throttle_every,
            throttle_result=throttle_result,
            disconnect_every=disconnect_every,
            idle_timeout=idle_timeout,
            resend_after=resend_after,
            seed=seed,
            record=record,
            **_control_settings(control_port),
        )
    except ValueError as e:
        _fail(f"invalid option: {e}", 2)
    server = Smg(config)
    credentials = ", ".join(f"{n}:{p}" for n, p in sorted(config.accounts.items()))
    _serve(
        server,
        host=host,
        port=port,
        log_level=log_level,
        as_json=as_json,
        shown={
            "callback": callback or None,
            # A simulator's test credentials, printed so that an SP can be pointed at it.
            "accounts": dict(sorted(config.accounts.items())),
            "callback_login": {"login_name": cb_name, "password": cb_password},
        },
        serving="masd sim smg: SGIP 1.2",
        then=f"accounts (login_name:password): {credentials}; reports and MOs to {callback or 'nowhere'} "
        f"as {callback_login}",
        stopped=lambda: _stopped(server.stats),
    )


@sim_app.command("smg-mo")
def smg_mo(
    sender: Annotated[str, typer.Option("--from", help="The handset's number, with 86 (UserNumber).")],
    destination: Annotated[
        str, typer.Option("--to", help="SPNumber: the access number and extension (e.g. 1065501234501).")
    ],
    text: TextOption,
    coding: Annotated[
        int | None,
        typer.Option("--coding", help="0 ASCII, 8 UCS-2 or 15 GBK. \\[default: 0 for ASCII, else 8]"),
    ] = None,
    concat: ConcatOption = "udh8",
    shuffle: ShuffleOption = False,
    host: HostOption = "127.0.0.1",
    control_port: SmgControlPortOption = 8803,
    timeout: SmgTimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Make a running simulated SMG send a mobile-originated message (模拟上行短信) over SGIP."""
    request: dict[str, Any] = {"op": "mo", "from": sender, "to": destination, "text": text, "concat": concat}
    if coding is not None:
        request["coding"] = coding
    if shuffle:
        request["shuffle"] = True
    _send_mo(host, control_port, request, timeout, "SMG", as_json)


@sim_app.command("smg-stats")
def smg_stats(
    host: HostOption = "127.0.0.1",
    control_port: SmgControlPortOption = 8803,
    timeout: SmgTimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Show a running simulated SMG's counters (统计)."""
    _show_stats(host, control_port, timeout, "SMG", as_json)
