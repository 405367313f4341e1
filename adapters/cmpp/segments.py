"""How a ``cmpp`` channel cuts a text into segments is the Chinese carriers' shared rule,
:class:`masd_adapters.cn_text.CmppSegmenter`; this module keeps the name it had first, which the tests
import."""

from __future__ import annotations

from ..cn_text import CmppSegmenter

__all__ = ["CmppSegmenter"]
