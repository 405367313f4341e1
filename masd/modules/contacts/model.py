"""The address book's words and rules, as pure functions: what a valid name, mobile, department path, tag
and group name are, the errors that say why one is not, and the :class:`Attendee` the book resolves an
organiser's choice into. The store, the importer, the CLI and the HTTP router all check values here, so
a value refused by one is refused by all with the same reason.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from masd.core import recipients

from .tables import NAME_LENGTH, PATH_LENGTH, TAG_LENGTH, TITLE_LENGTH

__all__ = [
    "Attendee",
    "ContactConflict",
    "ContactError",
    "ContactNotFound",
    "InvalidContact",
    "clean_group_name",
    "clean_mobile",
    "clean_name",
    "clean_title",
    "join_path",
    "split_list",
    "split_path",
]

# A department path is written "市政府/办公室/秘书科" or "市政府 > 办公室 > 秘书科"; Chinese input methods
# type the full-width forms of both.
_PATH_SEPARATORS = re.compile(r"\s*[/>／＞\\]\s*")
# Tags and groups in one cell: commas, semicolons and the Chinese enumeration comma, either width.
_LIST_SEPARATORS = re.compile(r"[,，;；、|\n]+")
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ContactError(ValueError):
    """A change the address book refuses. ``field`` names what is at fault (``mobile``, ``department``,
    ``groups``…), ``reason`` says why in words an operator can act on, ``value`` is what was given."""

    status = 422
    code = "invalid"

    def __init__(self, field: str, reason: str, value: object = None) -> None:
        self.field = field
        self.reason = reason
        self.value = value
        shown = f" ({value!r})" if value not in (None, "") else ""
        super().__init__(f"{field}{shown}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.field, self.reason, self.value))


class InvalidContact(ContactError):
    """A value that is not acceptable (a bad mobile, an empty name, a path too long)."""


class ContactNotFound(ContactError):
    """A person, department or group that does not exist."""

    status = 404
    code = "not_found"


class ContactConflict(ContactError):
    """The change would break a rule the book keeps: one person per mobile, unique names, no removing a
    department that still has people or sub-departments."""

    status = 409
    code = "conflict"


@dataclasses.dataclass(frozen=True, slots=True)
class Attendee:
    """Someone to notify: a person from the book (``person_id``) or a bare number (``person_id`` None,
    empty name and department)."""

    person_id: int | None
    name: str
    mobile: str
    department: str


def _text(value: str, field: str, limit: int, *, required: bool) -> str:
    cleaned = _SPACES.sub(" ", value).strip()
    if _CONTROL.search(cleaned):
        raise InvalidContact(field, "may not contain control characters", value)
    if required and not cleaned:
        raise InvalidContact(field, "is required", value)
    if len(cleaned) > limit:
        raise InvalidContact(field, f"is {len(cleaned)} characters long; at most {limit} are allowed", value)
    return cleaned


def clean_name(value: str, field: str = "name") -> str:
    """A person's name: required, spaces collapsed, at most 100 characters."""
    return _text(value, field, NAME_LENGTH, required=True)


def clean_title(value: str) -> str:
    """A person's title (职务): optional, at most 100 characters."""
    return _text(value, "title", TITLE_LENGTH, required=False)


def clean_group_name(value: str, field: str = "group") -> str:
    name = _text(value, field, NAME_LENGTH, required=True)
    if _LIST_SEPARATORS.search(name):
        raise InvalidContact(
            field, "may not contain commas, semicolons, 、 or |; they separate groups", value
        )
    return name


def clean_mobile(value: str, field: str = "mobile") -> str:
    """The one stored form of a number (see :func:`masd.core.recipients.normalize`)."""
    try:
        return recipients.normalize(value)
    except recipients.InvalidRecipient as e:
        raise InvalidContact(field, e.reason, value) from None


def split_path(value: str, field: str = "department") -> list[str]:
    """A department path as its parts, outermost first; empty for a blank value.

    ``"市政府 / 办公室 > 秘书科"`` → ``["市政府", "办公室", "秘书科"]``. Raises :class:`InvalidContact`
    when a part or the whole is too long.
    """
    parts = [_SPACES.sub(" ", p).strip() for p in _PATH_SEPARATORS.split(value.strip())]
    parts = [p for p in parts if p]
    for part in parts:
        if _CONTROL.search(part):
            raise InvalidContact(field, "may not contain control characters", value)
        if len(part) > NAME_LENGTH:
            raise InvalidContact(
                field, f"the name {part[:20]!r}… is longer than {NAME_LENGTH} characters", value
            )
    if len(join_path(parts)) > PATH_LENGTH:
        raise InvalidContact(field, f"the path is longer than {PATH_LENGTH} characters", value)
    return parts


def join_path(parts: Iterable[str]) -> str:
    """The stored form of a path: parts joined by ``/``."""
    return "/".join(parts)


def split_list(value: str, field: str = "tags") -> list[str]:
    """Tags or group names written in one cell, in order, without duplicates."""
    seen: dict[str, None] = {}
    limit = TAG_LENGTH if field == "tags" else NAME_LENGTH
    for item in _LIST_SEPARATORS.split(value):
        item = _SPACES.sub(" ", item).strip()
        if not item:
            continue
        if _CONTROL.search(item):
            raise InvalidContact(field, "may not contain control characters", value)
        if len(item) > limit:
            raise InvalidContact(field, f"{item[:20]!r}… is longer than {limit} characters", value)
        seen.setdefault(item, None)
    return list(seen)
