"""What the codecs of the Chinese carriers' protocols (CMPP, SGIP, SMGP) share: the error a malformed PDU
raises and the name of a code their tables do not name. Pure: no I/O, no trio."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PduError", "other_error"]


class PduError(ValueError):
    """Bytes that are not a well-formed PDU; the link should be dropped. Each protocol's codec raises its
    own subclass (``masd_adapters.cmpp.pdu.PduError`` …), so that a caller catches its protocol's.

    ``command`` is the PDU's name when known, ``field`` the spec's name of the field at fault.
    """

    def __init__(self, message: str, *, command: str | None = None, field: str | None = None) -> None:
        self.command = command
        self.field = field
        where = ": ".join(part for part in (command, field) if part)
        super().__init__(f"{where}: {message}" if where else message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments defeat the default exception pickling; errors cross process boundaries.
        return (_rebuild_pdu_error, (type(self), self.args[0], self.command, self.field))


def _rebuild_pdu_error(cls: type[PduError], text: str, command: str | None, field: str | None) -> PduError:
    error = cls.__new__(cls)
    ValueError.__init__(error, text)
    error.command, error.field = command, field
    return error


def other_error(names: Mapping[int, str], code: int) -> str:
    """The name ``names`` gives ``code``, or "other error (N)" for a code the table does not name."""
    return names.get(code, f"other error ({code})")
