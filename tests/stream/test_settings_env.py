"""Settings.to_env: the variables a worker process is started with give the same settings back."""

import pytest

from surveil.stream.settings import Settings, SettingsError


def test_to_env_round_trips_through_from_env():
    s = Settings(bootstrap_servers="127.0.0.1:19092,127.0.0.1:19093", feed_topics=("a.sse", "a.szse"),
                 feed_partitions=3, owner_partitions=2, checkpoint_interval_ms=750, console=False, metrics=False,
                 web_port=7001, group_id="g1")
    env = s.to_env({"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert env["SURVEIL_FEED_TOPICS"] == "a.sse,a.szse" and env["SURVEIL_CONSOLE"] == "False"
    assert Settings.from_env(env) == s


def test_the_securities_topic_and_csv_settings(tmp_path):
    from surveil.stream import topics

    s = Settings.from_env({})
    assert s.securities_topic == "surveil.ref.securities" and s.securities_csv == ""
    spec = {t.name: t for t in topics.specs(s)}["surveil.ref.securities"]
    assert spec.partitions == 1 and spec.config == topics.COMPACT
    csv = tmp_path / "sec.csv"
    csv.write_text("venue,symbol,prev_close,risk_warning\n")
    s = Settings.from_env({"SURVEIL_SECURITIES_TOPIC": "x.sec", "SURVEIL_SECURITIES_CSV": str(csv)})
    assert (s.securities_topic, s.securities_csv) == ("x.sec", str(csv)) and Settings.from_env(s.to_env()) == s
    with pytest.raises(SettingsError, match="SURVEIL_SECURITIES_TOPIC='a b': not a valid Kafka topic name"):
        Settings.from_env({"SURVEIL_SECURITIES_TOPIC": "a b"})
    with pytest.raises(SettingsError, match="SURVEIL_SECURITIES_CSV='nope.csv': file not found"):
        Settings.from_env({"SURVEIL_SECURITIES_CSV": "nope.csv"})
    with pytest.raises(SettingsError, match="file not found"):
        Settings.from_env({}, securities_csv="nope.csv")  # surveil worker --securities
