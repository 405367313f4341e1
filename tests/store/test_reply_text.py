"""A reply's text as a handset sent it, stored on SQLite, PostgreSQL and MariaDB whatever it holds:
invalid UTF-16 (a lone surrogate) and NUL become U+FFFD instead of failing the write."""

from __future__ import annotations

from pathlib import Path

import pytest

from masd.config import load_config
from masd.core.gateway import Gateway
from masd.store.db import Database
from masd_adapters.base import InboundReply


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("参加\ud800", "参加\ufffd"),
        ("1\x00", "1\ufffd"),
        ("请假\t孩子\n生病", "请假\t孩子\n生病"),
        ("", ""),
        ("长" * 1000, "长" * 1000),
    ],
)
async def test_a_reply_is_stored_whatever_its_text_holds(
    store_url: str, tmp_path: Path, sent: str, stored: str
) -> None:
    cfg = load_config(None, env={"MASD_NODE__DATA_DIR": str(tmp_path), "MASD_STORE__URL": store_url})
    db = Database(store_url)
    db.upgrade()
    try:
        gw = Gateway(cfg, db)
        await gw.reply("sim", InboundReply(sender="13800138000", destination="106570001", text=sent))
        (row,) = await gw.list_replies()
        assert row["text"] == stored
    finally:
        db.dispose()
