from pathlib import Path

import pytest

from trialpanorama.config import ConfigError, apply_overrides, load_config


def test_overrides_parse_yaml_scalars_and_create_maps():
    out = apply_overrides({"a": {"b": 1}}, ["a.b=3", "a.c=[x, y]", "new.key=true", "s=hello world"])
    assert out == {"a": {"b": 3, "c": ["x", "y"]}, "new": {"key": True}, "s": "hello world"}


def test_overrides_keep_dotted_keys_of_spark_conf_whole():
    data = {"spark": {"conf": {"spark.sql.shuffle.partitions": "8"}}}
    out = apply_overrides(data, ["spark.conf.spark.sql.shuffle.partitions=2", "spark.conf.spark.ui.enabled=false"])
    assert out["spark"]["conf"] == {"spark.sql.shuffle.partitions": 2, "spark.ui.enabled": False}
    assert data["spark"]["conf"]["spark.sql.shuffle.partitions"] == "8"  # the input is not modified


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1"])
def test_bad_overrides_are_refused(bad):
    with pytest.raises(ConfigError):
        apply_overrides({}, [bad])


def test_override_through_a_scalar_is_refused():
    with pytest.raises(ConfigError):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_default_config_loads_and_env_wins_for_tracking(monkeypatch):
    cfg = load_config()
    assert cfg.lake_root == "./lakehouse"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert cfg.tracking_uri == "http://127.0.0.1:9"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert cfg.tracking_uri == "sqlite:///mlflow.db"


def test_missing_config_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
