"""Settings.to_env: the variables a worker process is started with give the same settings back."""

from surveil.stream.settings import Settings


def test_to_env_round_trips_through_from_env():
    s = Settings(bootstrap_servers="127.0.0.1:19092,127.0.0.1:19093", feed_topics=("a.sse", "a.szse"),
                 feed_partitions=3, owner_partitions=2, checkpoint_interval_ms=750, console=False, metrics=False,
                 web_port=7001, group_id="g1")
    env = s.to_env({"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert env["SURVEIL_FEED_TOPICS"] == "a.sse,a.szse" and env["SURVEIL_CONSOLE"] == "False"
    assert Settings.from_env(env) == s

