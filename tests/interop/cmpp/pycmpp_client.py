"""An SP built on pycmpp 2.0.2 (PyPI), run by tests/e2e/test_cmpp_interop.py in a venv of its own:
CONNECT, one long Chinese SUBMIT with reports asked for, then wait for a report per part and for one
MO. Prints one JSON object with what it saw, then ends the process (pycmpp's receive loop spins after
the peer closes, so it runs in a daemon thread and the process exits with os._exit).

pycmpp's own DELIVER handling is missing and its ACTIVE_TEST_RESP is 16 octets claiming 13, so both
handlers are replaced here; DELIVER is decoded by hand in the 2.0 layout pycmpp speaks (version 0x21).

Usage: python pycmpp_client.py HOST PORT SP_ID SECRET TEXT [TIMEOUT]
"""

import json
import os
import struct
import sys
import threading
import time

from pycmpp.cmpp import Cmpp
from pycmpp.cmpp_defines import (
    CMPP_ACTIVE_TEST_REQ,
    CMPP_CONNECT_RESP,
    CMPP_DELIVER_REQ,
    CMPP_SUBMIT_RESP,
)

host, port, sp_id, secret, text = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 20.0
seen = {"connect_status": None, "submit_resps": [], "reports": [], "mos": [], "active_tests": 0}
done = threading.Event()


class ConnectResp:
    def __init__(self, cmpp, message):
        self.message = message

    def __call__(self):
        seen["connect_status"] = self.message[12]


class SubmitResp:
    def __init__(self, cmpp, message):
        self.message = message

    def __call__(self):
        msg_id, result = struct.unpack("!QB", self.message[12:21])
        seen["submit_resps"].append({"msg_id": str(msg_id), "result": result})


class ActiveTest:
    def __init__(self, cmpp, message):
        self.cmpp, self.message = cmpp, message

    def __call__(self):
        seen["active_tests"] += 1
        seq = self.message[8:12]
        self.cmpp.send(struct.pack("!LL", 13, 0x80000008) + seq + b"\x00")


class Deliver:
    """CMPP 2.0 DELIVER: Msg_Id 8, Dest_Id 21, Service_Id 10, TP_pid, TP_udhi, Msg_Fmt,
    Src_terminal_Id 21, Registered_Delivery, Msg_Length, Msg_Content, Reserve 8."""

    def __init__(self, cmpp, message):
        self.cmpp, self.message = cmpp, message

    def __call__(self):
        body = self.message[12:]
        msg_id = body[0:8]
        dest_id = body[8:29].rstrip(b"\0").decode()
        tp_udhi, msg_fmt = body[40], body[41]
        src = body[42:63].rstrip(b"\0").decode()
        registered, length = body[63], body[64]
        content = body[65 : 65 + length]
        if registered == 1:
            report_id, stat = struct.unpack("!Q", content[0:8])[0], content[8:15].decode()
            seen["reports"].append(
                {
                    "msg_id": str(report_id),
                    "stat": stat,
                    "length": length,
                    "terminal": content[35:56].rstrip(b"\0").decode(),
                }
            )
        else:
            seen["mos"].append(
                {
                    "dest_id": dest_id,
                    "from": src,
                    "msg_fmt": msg_fmt,
                    "tp_udhi": tp_udhi,
                    "content": content.hex(),
                }
            )
        self.cmpp.send(
            struct.pack("!LLL", 21, 0x80000005, struct.unpack("!L", self.message[8:12])[0]) + msg_id + b"\x00"
        )


def main():
    cmpp = Cmpp(host, port, sp_id, secret, src_id="", delivery=1, client_heartbeat=False)
    cmpp.handlers[CMPP_CONNECT_RESP] = ConnectResp
    cmpp.handlers[CMPP_SUBMIT_RESP] = SubmitResp
    cmpp.handlers[CMPP_ACTIVE_TEST_REQ] = ActiveTest
    cmpp.handlers[CMPP_DELIVER_REQ] = Deliver
    cmpp.connect()
    cmpp.auth()
    threading.Thread(target=cmpp.receive, daemon=True).start()
    deadline = time.monotonic() + timeout
    while seen["connect_status"] is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if seen["connect_status"] == 0:
        cmpp.submit(text, ["13800138000"])
        while time.monotonic() < deadline:
            parts = len(seen["submit_resps"])
            if parts and len(seen["reports"]) >= parts and seen["mos"]:
                break
            time.sleep(0.02)
        cmpp.terminate()
        time.sleep(0.2)
    print(json.dumps(seen), flush=True)
    os._exit(0)


main()
