"""config.yaml decodes into one frozen model; bad keys and values fail with their path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from streamer.config import AppConfig, load_config
from streamer.errors import ConfigError

ROOT = Path(__file__).parents[1]


def test_shipped_config_yaml_equals_the_built_in_defaults() -> None:
    # Every documented setting in config.yaml is a real key with the default value.
    assert load_config(ROOT / "config.yaml", env={}) == load_config(None, env={})


def test_every_setting_is_documented_in_config_yaml() -> None:
    text = (ROOT / "config.yaml").read_text()
    for section, _struct in AppConfig.__annotations__.items():
        assert f"{section}:" in text, section
    for name in msgspec.structs.fields(load_config(None, env={}).kafka):
        assert f"  {name.name}:" in text, name.name


def test_unknown_key_fails_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  lingr_ms: 3\n")
    with pytest.raises(ConfigError, match=r"unknown field `lingr_ms` - at `\$.kafka`"):
        load_config(path, env={})


def test_bad_value_fails_with_its_path_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("batch:\n  interval_ms: soon\n")
    with pytest.raises(ConfigError, match=r"Expected `int`, got `str` - at `\$.batch.interval_ms`"):
        load_config(path, env={})


def test_rule_violations_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("batch:\n  interval_ms: 0\nreplay:\n  speed: -1\n")
    with pytest.raises(ConfigError, match=r"interval_ms must be > 0.*speed must be > 0"):
        load_config(path, env={})


def test_environment_overrides_nested_settings_as_yaml_values() -> None:
    config = load_config(None, env={
        "STREAMER_KAFKA__BOOTSTRAP_SERVERS": "b1:9092,b2:9092",
        "STREAMER_BATCH__INTERVAL_MS": "100",
        "STREAMER_SINK": "stdout",
        "STREAMER_KAFKA_PASSWORD": "not-a-setting",
    })
    assert config.kafka.bootstrap_servers == "b1:9092,b2:9092"
    assert config.batch.interval_ms == 100
    assert config.sink == "stdout"


def test_bad_environment_value_names_the_path() -> None:
    with pytest.raises(ConfigError, match=r"\$.metrics.port"):
        load_config(None, env={"STREAMER_METRICS__PORT": "ninety"})


def test_idempotence_is_off_for_embedded_and_on_for_a_cluster() -> None:
    assert load_config(None, env={}).kafka.idempotence is False
    cluster = load_config(None, env={"STREAMER_KAFKA__BOOTSTRAP_SERVERS": "k:9092"})
    assert cluster.kafka.idempotence is True


def test_config_is_frozen() -> None:
    config = load_config(None, env={})
    with pytest.raises(AttributeError):
        config.sink = "stdout"  # type: ignore[misc]


def test_cli_exits_2_with_a_clear_message_on_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  acks: everyone\n")
    proc = subprocess.run([sys.executable, "-m", "streamer.cli", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "$.kafka.acks" in proc.stderr


def test_replay_files_name_each_venues_recording_and_file_serves_the_rest(
        tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("venues:\n  - {name: deribit}\n  - {name: okx}\n  - {name: bybit}\n"
                    "replay:\n  files: {okx: rec/okx.ndjson.gz, deribit: bundled}\n")
    replay = load_config(path, env={}).replay
    assert replay.files == {"okx": "rec/okx.ndjson.gz", "deribit": "bundled"}
    assert replay.file_for("okx") == "rec/okx.ndjson.gz"
    assert replay.file_for("bybit") == "bundled"  # replay.file, whose default is bundled


def test_replay_files_is_set_from_the_environment_per_venue() -> None:
    config = load_config(None, env={"STREAMER_REPLAY__FILES__BINANCE": "b.ndjson"})
    assert config.replay.file_for("binance") == "b.ndjson"
    assert config.replay.file_for("deribit") == "bundled"


def test_replay_files_naming_an_unknown_venue_fails_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("replay:\n  files: {kraken: k.ndjson}\n")
    with pytest.raises(ConfigError, match=r"Invalid enum value 'kraken' - at `key` in "
                                          r"`\$.replay.files`"):
        load_config(path, env={})


def test_a_per_venue_replay_key_outside_files_is_an_unknown_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("venues:\n  - {name: okx, replay_file: okx.ndjson}\n")
    with pytest.raises(ConfigError, match=r"unknown field `replay_file` - at `\$.venues\[0\]`"):
        load_config(path, env={})


def test_one_replay_file_for_several_replayed_venues_is_refused(tmp_path: Path) -> None:
    # A recording holds one venue's messages: OKX would be served Deribit's.
    path = tmp_path / "c.yaml"
    path.write_text("venues:\n  - {name: deribit}\n  - {name: okx}\n"
                    "replay:\n  file: deribit.ndjson.gz\n")
    with pytest.raises(ConfigError, match=r"replay.file is one recording but venues deribit, "
                                          r"okx replay it: name each venue's recording in "
                                          r"replay.files"):
        load_config(path, env={})


def test_one_replay_file_stays_valid_for_the_one_venue_it_serves(tmp_path: Path) -> None:
    # As before replay.files: one replayed venue, one file; or the others named in files,
    # or not replayed (a live or ws:// url).
    path = tmp_path / "c.yaml"
    for venues, files in (("[{name: deribit}]", "{}"),
                          ("[{name: deribit}, {name: okx}]", "{okx: bundled}"),
                          ("[{name: deribit}, {name: okx, url: live}]", "{}")):
        path.write_text(f"venues: {venues}\nreplay:\n  file: my.ndjson.gz\n  files: {files}\n")
        config = load_config(path, env={})
        assert config.replay.file_for("deribit") == "my.ndjson.gz"


@pytest.mark.parametrize(("name", "suggestion"), [
    ("STREAMER_BATCHH__INTERVAL_MS", "no section `batchh`; did you mean "
                                     "STREAMER_BATCH__INTERVAL_MS?"),
    ("STREAMER_KAFKA_BOOTSTRAP_SERVERS", "did you mean STREAMER_KAFKA__BOOTSTRAP_SERVERS?"),
    ("STREAMER_KAFKA__LINGERMS", "no key of kafka `lingerms`; did you mean "
                                 "STREAMER_KAFKA__LINGER_MS?"),
    ("STREAMER_SINK__KIND", "`sink` has no keys"),
])
def test_an_unknown_streamer_variable_is_an_error_naming_it(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={name: "100", "STREAMER_BATCH__INTERVAL_MS": "100"})
    assert f"unknown environment variable(s): {name} (" in str(caught.value)
    assert suggestion in str(caught.value)


def test_the_credential_variables_the_config_names_are_not_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("kafka: {sasl_username_env: STREAMER_SASL_USER}\n")
    config = load_config(path, env={"STREAMER_SASL_USER": "me", "STREAMER_KAFKA_PASSWORD": "pw",
                                    "STREAMER_CALIBRATION__MODELS__ETH": "sabr"})
    assert config.kafka.sasl_username_env == "STREAMER_SASL_USER"
    assert config.calibration.models == {"eth": "sabr"}


@pytest.mark.parametrize(("env", "message"), [
    ({"STREAMER_METRICS__PORT": "ninety"},
     "`$.metrics.port` (from environment variable STREAMER_METRICS__PORT)"),
    ({"STREAMER_BATCH__INTERVAL_MS": "-1"},
     "batch.interval_ms must be > 0 (from environment variable STREAMER_BATCH__INTERVAL_MS)"),
])
def test_a_bad_value_from_the_environment_names_the_variable(env: dict[str, str],
                                                             message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env=env)
    assert message in str(caught.value)


def test_the_cli_exits_2_naming_an_unknown_variable() -> None:
    proc = subprocess.run([sys.executable, "-m", "streamer.cli", "replay", "bundled"],
                          env={**os.environ, "STREAMER_BATCHH__INTERVAL_MS": "100"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "STREAMER_BATCHH__INTERVAL_MS" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(("yaml_text", "path"), [
    ("calibration:\n  budget_ms: 0\n", "$.calibration.budget_ms"),
    ("calibration:\n  max_rmse_vol: -0.01\n", "$.calibration.max_rmse_vol"),
    ("kafka:\n  topic_partitions: 0\n", "$.kafka.topic_partitions"),
    ("metrics:\n  port: 70000\n", "$.metrics.port"),
    ("venues:\n  - name: deribit\n    heartbeat_s: 0\n", "$.venues[0].heartbeat_s"),
    ("venues:\n  - name: okx\n    currencies: []\n", "$.venues[0].currencies"),
])
def test_a_setting_out_of_its_bounds_is_refused_with_its_path(tmp_path: Path, yaml_text: str,
                                                              path: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    assert f"`{path}`" in str(caught.value)


def test_every_section_is_frozen_and_refuses_unknown_keys() -> None:
    sections = [AppConfig, *(type(getattr(AppConfig(), f)) for f in AppConfig.__struct_fields__
                             if isinstance(getattr(AppConfig(), f), msgspec.Struct))]
    for kind in sections:
        assert kind.__struct_config__.frozen, kind
        assert kind.__struct_config__.forbid_unknown_fields, kind
