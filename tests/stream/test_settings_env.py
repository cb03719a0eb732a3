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


def test_the_secrets_are_not_in_the_repr():
    key = "A" * 43 + "="  # a valid Fernet key (32 bytes, URL-safe base64)
    s = Settings(sasl_password="s3cret-pw", checkpoint_key="k3y-hmac", console_session_key=key,
                 security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")
    s.validate()
    for text in (repr(s), str(s), f"{s!r}"):
        assert "s3cret-pw" not in text and "k3y-hmac" not in text and key not in text, text
    assert "sasl_username='u'" in repr(s)  # the other settings are still shown
    # still settings like the others: from_env and to_env go through fields(), which has them
    assert Settings.from_env(s.to_env()) == s and Settings.from_env(s.to_env()).sasl_password == "s3cret-pw"


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_a_password(protocol):
    env = {"SURVEIL_SECURITY_PROTOCOL": protocol, "SURVEIL_SASL_MECHANISM": "SCRAM-SHA-512",
           "SURVEIL_SASL_USERNAME": "surveil-worker"}
    with pytest.raises(SettingsError, match=r"^SURVEIL_SASL_PASSWORD='': required with SASL$"):
        Settings.from_env(env)  # e.g. a Secret's key misnamed: said at start, not as an authentication failure
    with pytest.raises(SettingsError, match="SURVEIL_SASL_PASSWORD='': required with SASL"):
        Settings.from_env({**env, "SURVEIL_SASL_PASSWORD": ""})
    s = Settings.from_env({**env, "SURVEIL_SASL_PASSWORD": "pw-of-the-worker"})
    assert s.sasl_password == "pw-of-the-worker"
    # the username is still checked first; no error shows a password
    with pytest.raises(SettingsError) as e:
        Settings.from_env({**env, "SURVEIL_SASL_USERNAME": "", "SURVEIL_SASL_PASSWORD": "pw-of-the-worker"})
    assert "SURVEIL_SASL_USERNAME" in str(e.value) and "pw-of-the-worker" not in str(e.value)
    assert Settings.from_env({"SURVEIL_SASL_PASSWORD": ""}).security_protocol == "PLAINTEXT"  # no SASL: not needed
