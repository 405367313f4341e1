"""CMPP clients that are not ours against the simulated ISMG (``masd_adapters.cmpp.ismg``): the two
independent SP implementations PyPI offers (docs/interop/cmpp-peers.md), each run as a subprocess of
tests/interop/cmpp/ in a venv of its own (``.venv/interop-cmpp``, made once with ``pip install
cmppy==0.3 pycmpp==2.0.2``) and ended by a timeout, since both are thread-based and pycmpp's receive loop
spins after the peer closes.

How they differ from the spec, and so what the simulator must take:

* **pycmpp 2.0.2** sends Version 0x21 (taken in the 2.0 layout) and reads CONNECT_RESP Status and
  SUBMIT_RESP Result as one octet; its reports are off by default (``delivery=1`` is passed here); it
  never sends Src_Id (21 NULs), Msg_src must be exactly its 6-character SP id, Msg_Fmt is always 8; a
  text of 70 characters or more goes in parts of 64 characters with the UDH ``05 00 03 ref total n`` (a
  random reference), TP_pid 1 and Pk_total/Pk_number filled. It has no DELIVER handler (reports and MOs
  would never be answered) and its ACTIVE_TEST_RESP is 16 octets claiming 13, so the script replaces
  both handlers; its receive loop runs in a daemon thread and the script ends with ``os._exit``.
* **cmppy 0.3** speaks 3.0 with the right layout (32-octet terminal ids, LinkID, 4-octet Status and
  Result) but opens one connection per ``request()`` (CONNECT, one PDU, TERMINATE), refuses texts of 70
  characters or more and has no UDH, parses no DELIVER or ACTIVE_TEST (KeyError), and defaults to
  ``service_id='MI'`` and ``registered_delivery=0``; its reader takes Total_Length octets *after* the
  length field (4 too many when more is waiting). So the script uses its CONNECT and SUBMIT classes and
  reads the report from its socket by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from masd_adapters.cmpp import constants as c
from masd_adapters.cmpp import msgid, text
from masd_adapters.cmpp.ismg import Ismg, IsmgConfig

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tests" / "interop" / "cmpp"
VENV = ROOT / ".venv" / "interop-cmpp"
PACKAGES = ("cmppy==0.3", "pycmpp==2.0.2")
CLIENT_TIMEOUT = 30.0
LONG_TEXT = (
    "会议通知：明天上午九点在三楼会议室召开全体会议，请准时参加。会议议程包括年度总结、明年计划以及人员"
    "安排等重要事项，请各部门负责人提前准备材料并于今天下午五点前提交到办公室。"
)
PYCMPP = ("901234", "secret")
CMPPY = ("901235", "other")


def interop_python() -> Path:
    """The venv's python, the venv made once (in a side directory renamed into place, so that two runs
    at once do not use a half-made one)."""
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    side = VENV.with_name(f"{VENV.name}.{os.getpid()}")
    subprocess.run([sys.executable, "-m", "venv", str(side)], check=True, timeout=300)
    install = subprocess.run(
        [str(side / "bin" / "python"), "-m", "pip", "install", "-q", *PACKAGES],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        pytest.fail(f"pip install {' '.join(PACKAGES)} failed:\n{install.stderr[-2000:]}")
    try:
        side.rename(VENV)
    except OSError:
        pass  # another run made it first; use that one
    # A venv's scripts name its own path, so the renamed one is used through its python only.
    return python


@pytest.fixture(scope="module")
def python() -> Path:
    return interop_python()


@pytest.fixture
async def ismg(tmp_path: Path) -> AsyncIterator[Ismg]:
    config = IsmgConfig(
        port=0,
        accounts=dict((PYCMPP, CMPPY)),
        report_delay=0.1,
        active_test_interval=1.0,
        record=tmp_path / "ismg.jsonl",
        seed=19,
    )
    server = Ismg(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


async def run_client(python: Path, script: str, ismg: Ismg, account: tuple[str, str], body: str) -> Any:
    """Run one client script against the ISMG; the JSON object it prints."""
    command = [str(python), str(CLIENTS / script), "127.0.0.1", str(ismg.port), *account, body, "15"]
    with trio.fail_after(CLIENT_TIMEOUT):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    out = done.stdout.decode().strip().splitlines()
    assert done.returncode == 0 and out, done.stderr.decode()[-2000:]
    return json.loads(out[-1])


def records(ismg: Ismg) -> list[dict[str, Any]]:
    ismg.flush_record()
    assert ismg.config.record is not None
    return [json.loads(line) for line in Path(ismg.config.record).read_text().splitlines()]


async def test_pycmpp_connects_as_0x21_sends_a_long_chinese_text_gets_its_reports_and_an_mo(python, ismg):
    await ismg.inject_mo(sender="13900001111", dest_id="1065712345001", text="参加", sp_id=PYCMPP[0])
    seen = await run_client(python, "pycmpp_client.py", ismg, PYCMPP, LONG_TEXT)
    assert seen["connect_status"] == 0
    resps = seen["submit_resps"]
    assert len(resps) > 1 and all(r["result"] == 0 for r in resps)
    # A report per part, 60 octets (a 2.0 session), naming each part's Msg_Id.
    assert sorted(r["msg_id"] for r in seen["reports"]) == sorted(r["msg_id"] for r in resps)
    assert {(r["stat"], r["length"], r["terminal"]) for r in seen["reports"]} == {
        ("DELIVRD", 60, "13800138000")
    }
    assert all(msgid.unpack(int(r["msg_id"])).ismg_code == ismg.config.ismg_code for r in resps)
    [mo] = seen["mos"]
    assert (mo["dest_id"], mo["from"], mo["msg_fmt"]) == ("1065712345001", "13900001111", c.MSG_FMT_UCS2)
    assert bytes.fromhex(mo["content"]).decode("utf-16-be") == "参加"
    # What the ISMG received: version 0x21, then the parts pycmpp cut, which join to the text.
    connect, *submits = records(ismg)
    assert connect["version"] == 0x21 and connect["status"] == 0
    assert all(s["version"] == "2.0" and s["tp_udhi"] == 1 and s["src_id"] == "" for s in submits)
    parts = [
        text.Part(s["pk_total"], s["pk_number"], 1, s["msg_fmt"], bytes.fromhex(s["msg_content"]))
        for s in submits
    ]
    assert text.reassemble(parts) == LONG_TEXT
    assert ismg.stats.reports_acked == len(resps) and ismg.stats.mo_acked == 1


async def test_cmppy_submits_in_30_and_reads_a_71_octet_report_with_the_same_msg_id(python, ismg):
    seen = await run_client(python, "cmppy_client.py", ismg, CMPPY, "会议通知：明天九点")
    assert seen["logged_in"] and "error" not in seen, seen
    assert seen["submit_resp"]["result"] == 0
    report = seen["report"]
    assert report == {
        "msg_id": seen["submit_resp"]["msg_id"],
        "stat": "DELIVRD",
        "length": 71,
        "dest_id": "1065712345",
    }
    connect, submit = records(ismg)
    assert connect["version"] == c.VERSION_30
    assert submit["version"] == "3.0" and submit["text"] == "会议通知：明天九点"
    assert submit["service_id"] == "MI"  # cmppy's default
    await trio.sleep(0.2)
    assert ismg.stats.terminates_received == 1 and ismg.stats.reports_acked == 1


async def test_cmppy_with_a_wrong_secret_is_refused(python, ismg):
    seen = await run_client(python, "cmppy_client.py", ismg, (CMPPY[0], "wrong"), "x")
    assert seen["logged_in"] is False
    [connect] = records(ismg)
    assert connect["status"] == c.CONNECT_AUTH_FAILED
