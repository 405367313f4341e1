"""An SP built on cmppy 0.3 (PyPI), run by tests/e2e/test_cmpp_interop.py in a venv of its own: CONNECT
(CMPP 3.0), one SUBMIT with a report asked for and its SUBMIT_RESP through cmppy's own classes, then the
report read from cmppy's socket by hand (cmppy parses no DELIVER) and answered, then TERMINATE. With a
wrong secret, cmppy's request() gives None. Prints one JSON object.

Usage: python cmppy_client.py HOST PORT SP_ID SECRET TEXT [TIMEOUT]
"""

import json
import struct
import sys

from cmppy import Cmppy, SubmitReq
from cmppy.response import parse_response

host, port, sp_id, secret, text = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 20.0
seen = {"logged_in": False, "submit_resp": None, "report": None, "active_tests": 0}


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_pdu(sock):
    head = read_exactly(sock, 12)
    length, command_id, seq = struct.unpack("!LLL", head)
    return command_id, seq, read_exactly(sock, length - 12)


def main():
    client = Cmppy(host, port, sp_id, secret)
    client._so.settimeout(timeout)
    if not client._commence():
        client._close()
        print(json.dumps(seen), flush=True)
        return
    seen["logged_in"] = True
    request = SubmitReq(
        msg_src=sp_id,
        msg_content=text,
        src_id="1065712345",
        dest_terminal_id=["13800138000"],
        registered_delivery=1,
    )
    client._write(request.message)
    resp = parse_response(client._read())
    seen["submit_resp"] = {"msg_id": str(resp.msg_id), "result": resp.result}
    sock = client._so
    while seen["report"] is None:
        command_id, seq, body = read_pdu(sock)
        if command_id == 0x00000008:  # ACTIVE_TEST: 13 octets back
            seen["active_tests"] += 1
            sock.sendall(struct.pack("!LLL", 13, 0x80000008, seq) + b"\x00")
            continue
        if command_id != 0x00000005:
            continue
        # CMPP 3.0 DELIVER: Msg_Id 8, Dest_Id 21, Service_Id 10, TP_pid, TP_udhi, Msg_Fmt,
        # Src_terminal_Id 32, Src_terminal_type, Registered_Delivery, Msg_Length, Msg_Content, LinkID 20.
        registered, length = body[75], body[76]
        content = body[77 : 77 + length]
        if registered == 1:
            seen["report"] = {
                "msg_id": str(struct.unpack("!Q", content[0:8])[0]),
                "stat": content[8:15].decode(),
                "length": length,
                "dest_id": body[8:29].rstrip(b"\0").decode(),
            }
        sock.sendall(struct.pack("!LLL", 24, 0x80000005, seq) + body[0:8] + struct.pack("!L", 0))
    client._terminate()
    print(json.dumps(seen), flush=True)


try:
    main()
except OSError as e:  # a timeout included
    seen["error"] = str(e)
    print(json.dumps(seen), flush=True)
