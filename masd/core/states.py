"""Delivery states and the rules that join them.

accepted → queued → submitting → submitted → delivered | undelivered | expired | rejected | failed;
and cancelled from any state before submission. "accepted" is the instant of acceptance; a stored
delivery starts "queued". Final states never change again.
"""

from __future__ import annotations

import enum

__all__ = ["FINAL", "DeliveryState", "SegmentState"]


class DeliveryState(enum.StrEnum):
    ACCEPTED = "accepted"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset(
    {
        DeliveryState.DELIVERED,
        DeliveryState.UNDELIVERED,
        DeliveryState.EXPIRED,
        DeliveryState.REJECTED,
        DeliveryState.FAILED,
        DeliveryState.CANCELLED,
    }
)
FINAL_VALUES = tuple(s.value for s in DeliveryState if s in FINAL)  # in the enum's order
PENDING_VALUES = (DeliveryState.QUEUED.value, DeliveryState.SUBMITTING.value, DeliveryState.SUBMITTED.value)


class SegmentState(enum.StrEnum):
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DELETED = "deleted"
    UNKNOWN = "unknown"


def delivery_state_for_segment_failure(status: str) -> DeliveryState:
    """A segment that did not arrive decides the delivery's final state."""
    if status == "expired":
        return DeliveryState.EXPIRED
    if status == "rejected":
        return DeliveryState.REJECTED
    return DeliveryState.UNDELIVERED
