"""The OpenAPI document against the live API: schemathesis generates requests for every operation
from /openapi.json, valid and invalid, sends them over real HTTP with a valid key to an in-process
daemon, and checks that none is answered 5xx and that each answer is one the document describes
(status, content type, body schema).

Generation is derandomized, so a run is repeatable; each operation gets a bounded number of examples
in each mode, which keeps the test to well under a minute.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
import trio
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from masd.config import load_config
from masd.core.apps import SCOPES
from masd.daemon import Daemon
from masd.store import apps as app_store

EXAMPLES = 40  # per operation and generation mode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def daemon_with_key(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    env = {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_HTTP__LISTEN": f"127.0.0.1:{_free_port()}",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
    }
    daemon = Daemon(load_config(None, env=env))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        # Every scope, so that the address book's routes are fuzzed past their scope check.
        scopes = ",".join(sorted(SCOPES))
        _, key = await daemon.db.write(
            lambda c: app_store.create_app(c, "fuzz", now=time.time(), scopes=scopes)
        )
        yield f"http://{daemon.cfg.http.listen}", key
        daemon.stop()


def _fuzz(base_url: str, key: str) -> dict[str, list[str]]:
    """Run every operation in both modes; returns the failures found, by operation."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    auth = {"Authorization": f"Bearer {key}"}
    failures: dict[str, list[str]] = {}
    seen: dict[str, list[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for op in operations:
        for mode in GenerationMode:

            @hypothesis.settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                report_multiple_bugs=False,
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                response = case.call(base_url=base_url, headers=auth)
                if mode is GenerationMode.POSITIVE:
                    seen.setdefault(f"{op.method.upper()} {op.path}", []).append(response.status_code)
                case.validate_response(response, checks=CHECKS)

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to make invalid: the operation takes no parameters and no body
            except Exception as e:  # each operation's first failure is reported, then the next runs
                failures.setdefault(f"{op.method.upper()} {op.path}", []).append(f"{mode.value}: {e}")
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/messages",
        "POST /v1/messages/batch",
        "GET /v1/messages/{id}",
        "GET /v1/replies",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    }
    # Proof that the run reached the handlers: every operation was answered 2xx at least once (the
    # documented examples are among what is sent), not merely refused at the door.
    # The modules' routes name rows (a meeting, a department) that a fuzzer's random ids rarely hit in
    # an empty store: for them, an answer past the key check (404, 409, 422 …) proves the handler ran.
    core = ("/v1/messages", "/v1/replies", "/healthz", "/readyz", "/metrics")
    never = {
        k: sorted(set(codes))
        for k, codes in seen.items()
        if not any(200 <= c < 300 for c in codes)
        and (k.split(" ", 1)[1].startswith(core) or set(codes) <= {401})
    }
    assert not never, f"never answered 2xx: {never}"
    return failures


async def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(tmp_path: Path) -> None:
    async with daemon_with_key(tmp_path) as (base_url, key):
        failures = await trio.to_thread.run_sync(_fuzz, base_url, key)
    assert failures == {}, "\n\n".join(f"{op}:\n" + "\n".join(errs) for op, errs in failures.items())
