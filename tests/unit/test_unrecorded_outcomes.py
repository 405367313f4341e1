"""A receipt that overtakes its submit outcome waits until the recorder has queued that outcome's write."""

from __future__ import annotations

import trio

from masd.core.gateway import UnrecordedOutcomes


async def test_a_receipt_for_an_id_nobody_waits_on_goes_at_once() -> None:
    u = UnrecordedOutcomes()
    u.ids.add("a1")
    with trio.fail_after(1):
        await u.wait_for(["b2", "c3"])


async def test_a_receipt_for_an_unrecorded_outcome_waits_until_its_write_is_queued() -> None:
    u = UnrecordedOutcomes()
    u.ids.update({"a1", "a2"})
    went: list[float] = []

    async def receipt() -> None:
        await u.wait_for(["zz", "a2"])
        went.append(trio.current_time())

    async with trio.open_nursery() as n:
        n.start_soon(receipt)
        await trio.sleep(0.5)
        assert went == []  # still waiting: the outcome is not queued yet
        u.queued()
    assert went and went[0] >= 0.5
    assert u.ids == set()  # what was queued is no longer waited for


async def test_waiting_again_after_a_turn_waits_for_the_next_turn() -> None:
    u = UnrecordedOutcomes()
    u.queued()
    u.ids.add("b1")
    with trio.move_on_after(0.2) as scope:
        await u.wait_for(["b1"])
    assert scope.cancelled_caught  # the earlier turn does not count for an id added after it
