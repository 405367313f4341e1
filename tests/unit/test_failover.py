"""The failover state new deliveries are routed by: a channel failed over sends its new work to its
backup (or that backup's, when it is failed over too), with the channel as the home it comes back to."""

from __future__ import annotations

from masd.core.failover import Failover


def test_a_channel_not_failed_over_keeps_its_deliveries() -> None:
    assert Failover().divert("cm") == ("cm", None)


def test_a_failed_over_channel_sends_new_work_to_its_backup_and_is_its_home() -> None:
    f = Failover()
    f.begin("cm", "ct")
    assert f.divert("cm") == ("ct", "cm") and f.active("cm") == "ct"
    f.end("cm")
    assert f.divert("cm") == ("cm", None) and f.active("cm") is None


def test_a_backup_failed_over_in_turn_passes_the_work_on_with_the_first_home() -> None:
    f = Failover()
    f.begin("cm", "ct")
    f.begin("ct", "cu")
    assert f.divert("cm") == ("cu", "cm")
    assert f.divert("ct") == ("cu", "ct")


def test_backups_handing_work_round_stop_at_the_last_channel_not_seen() -> None:
    f = Failover()
    f.begin("a", "b")
    f.begin("b", "a")
    assert f.divert("a") == ("b", "a")


def test_the_link_is_down_since_its_drivers_report() -> None:
    f = Failover()
    assert f.down_since("cm") is None
    f.link_changed("cm", False)
    first = f.down_since("cm")
    assert first is not None
    f.link_changed("cm", False)  # a second report does not move it
    assert f.down_since("cm") == first
    f.link_changed("cm", True)
    assert f.down_since("cm") is None
