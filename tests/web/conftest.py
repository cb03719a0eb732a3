"""Fixtures of the console tests (helpers in console_kit.py)."""

import pytest
from console_kit import write_users

# the tests of this folder import ``conftest``, which is this module here (tests/conftest.py's fixtures still apply)
from surveil.kafka_local import free_ports  # noqa: F401


@pytest.fixture(scope="session")
def users_file(tmp_path_factory):
    """A users file with ``desk1`` (desk) and ``admin1`` (admin); tests add broker users to their own copies."""
    return write_users(tmp_path_factory.mktemp("users") / "users.toml")
