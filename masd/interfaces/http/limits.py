"""The most the HTTP API takes in one request: body size, batch length, ids, a page of replies."""

from __future__ import annotations

__all__ = ["MAX_BATCH", "MAX_BODY", "MAX_ID", "MAX_REPLIES"]

MAX_BODY = 1024 * 1024  # bytes: ample for 2,000 characters to tens of thousands of recipients
MAX_BATCH = 1000  # messages in one POST /v1/messages/batch
MAX_ID = 2**63 - 1  # the widest id column; larger numbers would fail in the driver, not as a 404
MAX_REPLIES = 1000  # replies in one page of GET /v1/replies
