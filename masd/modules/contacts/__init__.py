"""The address book (通讯录): people with their mobile, department, title and tags; a department tree;
groups. Other modules (meetings, reminders) call :func:`resolve` to turn an organiser's choice of people,
departments, groups and bare numbers into :class:`Attendee` s, each mobile once.

The module owns its tables (:mod:`.tables`, migration 0003) and nothing else writes them. Files come and
go as CSV or XLSX (:mod:`.importer`); the command line is ``masd contacts`` (:mod:`.cli`) and the HTTP API
``/v1/contacts`` (:mod:`.http`).
"""

from __future__ import annotations

from .model import Attendee, ContactConflict, ContactError, ContactNotFound, InvalidContact
from .store import resolve

__all__ = ["Attendee", "ContactConflict", "ContactError", "ContactNotFound", "InvalidContact", "resolve"]
