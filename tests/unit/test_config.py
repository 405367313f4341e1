"""Configuration: a TOML file, MASD_* overrides, and errors that name the key, the value and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from masd.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "masd.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_no_file_means_the_embedded_defaults_with_the_sim_channel() -> None:
    cfg = load_config(None, env={})
    assert list(cfg.channels) == ["sim"] and cfg.channels["sim"].driver == "sim"
    assert cfg.store_url.startswith("sqlite:///") and cfg.store_url.endswith("masd.db")
    assert cfg.http.listen == "127.0.0.1:8080"


def test_the_shipped_example_and_demo_configurations_are_valid() -> None:
    assert load_config(ROOT / "config" / "masd.toml", env={}).queue.max_attempts == 5
    demo = load_config(ROOT / "config" / "demo.toml", env={})
    assert demo.channels["smpp"].driver == "smpp" and demo.channels["smpp"].options["port"] == 2775


def test_a_configuration_reaches_an_intake_worker_unchanged_as_json(tmp_path: Path) -> None:
    # The daemon hands its workers the configuration it loaded (file and environment), as JSON.
    path = write(
        tmp_path, '[intake]\nworkers = 2\n[dbpoll.oa]\nurl = "mysql://oa:s3cret@db/oa"\napp = "oa"\n'
    )
    for cfg in (
        load_config(path, env={"MASD_QUEUE__MAX_ATTEMPTS": "3"}),
        load_config(ROOT / "config" / "masd.toml", env={}),
        load_config(ROOT / "config" / "demo.toml", env={}),
    ):
        assert Config.model_validate_json(cfg.model_dump_json()) == cfg
    first = Config.model_validate_json(load_config(path, env={}).model_dump_json())
    assert first.intake.workers == 2 and first.dbpoll["oa"].url == "mysql://oa:s3cret@db/oa"


def test_environment_overrides_the_file_and_is_read_as_toml(tmp_path: Path) -> None:
    p = write(tmp_path, "[queue]\nmax_attempts = 3\n")
    cfg = load_config(p, env={"MASD_QUEUE__MAX_ATTEMPTS": "7", "MASD_HTTP__ENABLED": "false"})
    assert cfg.queue.max_attempts == 7 and cfg.http.enabled is False


def test_a_string_environment_value_needs_no_quotes() -> None:
    cfg = load_config(None, env={"MASD_HTTP__LISTEN": "0.0.0.0:9000"})
    assert cfg.http.listen == "0.0.0.0:9000"


def test_masd_config_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[node]\nname = 'n7'\n")
    assert load_config(None, env={"MASD_CONFIG": str(p)}).node_name == "n7"


def test_a_channel_named_after_a_driver_needs_no_driver_key(tmp_path: Path) -> None:
    p = write(tmp_path, "[channels.sim]\nrate = 5\n")
    assert load_config(p, env={}).channels["sim"].driver == "sim"


def test_a_wrong_type_names_the_key_the_value_and_what_is_allowed(tmp_path: Path) -> None:
    p = write(tmp_path, '[queue]\nmax_attempts = "many"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    msg = str(e.value)
    assert "queue.max_attempts" in msg and "'many'" in msg and "integer" in msg and str(p) in msg


def test_an_out_of_range_value_says_the_range(tmp_path: Path) -> None:
    p = write(tmp_path, "[queue]\ndefault_priority = 12\n")
    with pytest.raises(ConfigError, match=r"queue.default_priority = 12: .*less than or equal to 9"):
        load_config(p, env={})


def test_a_choice_lists_the_choices(tmp_path: Path) -> None:
    p = write(tmp_path, "[channels.sim]\nconcat = 'udh'\n")
    with pytest.raises(
        ConfigError, match=r"channels.sim.concat = 'udh'.*'udh8', 'udh16', 'sar' or 'payload'"
    ):
        load_config(p, env={})


def test_an_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    p = write(tmp_path, "[queue]\nmax_atempts = 3\n")
    with pytest.raises(ConfigError, match=r"queue.max_atempts: unknown key"):
        load_config(p, env={})


def test_a_bad_listen_address_explains_the_form(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"http.listen = 'localhost': .*host:port"):
        load_config(None, env={"MASD_HTTP__LISTEN": "localhost"})


def test_a_missing_file_and_bad_toml_are_reported_plainly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[queue\n"), env={})


def test_a_channels_resend_and_failover_settings_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[channels.cm]\ndriver = "sim"\nresend_undelivered = 2\nresend_delay_seconds = 30\n'
        'resend_states = ["undelivered"]\nresend_via = "ct"\nbackup = "ct"\nfailover_after_seconds = 20\n'
        '[channels.ct]\ndriver = "sim"\n',
    )
    cm = load_config(path, env={}).channels["cm"]
    assert (cm.resend_undelivered, cm.resend_delay_seconds, cm.resend_states) == (2, 30.0, ["undelivered"])
    assert (cm.resend_via, cm.backup, cm.failover_after_seconds) == ("ct", "ct", 20.0)
    ct = load_config(path, env={}).channels["ct"]
    assert (ct.resend_undelivered, ct.resend_states, ct.backup) == (0, ["undelivered", "expired"], None)


@pytest.mark.parametrize(
    ("channels", "said"),
    [
        (
            '[channels.a]\ndriver = "sim"\nbackup = "b"\n',
            "channels.a.backup = 'b': no such channel; configured: a",
        ),
        ('[channels.a]\ndriver = "sim"\nresend_via = "a"\n', "a channel cannot be its own resend via"),
        (
            '[channels.a]\ndriver = "sim"\nbackup = "v"\n[channels.v]\ndriver = "sim"\nkind = "voice"\n',
            "channels.a.backup = 'v': that is a voice channel and this one is sms",
        ),
        (
            '[channels.a]\ndriver = "sim"\nbackup = "b"\n[channels.b]\ndriver = "sim"\nbackup = "a"\n',
            "the backups form a ring (a → b → a)",
        ),
        ('[channels.a]\ndriver = "sim"\nresend_states = ["delivered"]\n', "channels.a.resend_states.0"),
    ],
)
def test_a_resend_or_failover_setting_that_cannot_work_stops_the_start(
    tmp_path: Path, channels: str, said: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, channels), env={})
    assert said in str(info.value)


def test_the_meeting_signature_is_checked_as_a_channels_is() -> None:
    with pytest.raises(ConfigError, match=r"meeting\.signature = '市政府'.*full-width brackets"):
        load_config(None, env={"MASD_MEETING__SIGNATURE": "市政府"})
    assert (
        load_config(None, env={"MASD_MEETING__SIGNATURE": " 【市政府】 "}).meeting.signature == "【市政府】"
    )
