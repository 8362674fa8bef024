import pytest

from shared.settings import DEFAULT_HISCORES_URL, Settings, SettingsError


def test_defaults_match_the_architecture():
    s = Settings.from_env({})
    assert s.nats_url == "nats://127.0.0.1:4222"
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/osrs"
    assert s.hiscores_url == DEFAULT_HISCORES_URL == "https://secure.runescape.com"
    assert (s.fetch_interval, s.api_host, s.api_port) == (3600, "127.0.0.1", 8000)


def test_environment_overrides():
    s = Settings.from_env(
        {
            "OSRS_FETCH_INTERVAL": "120",
            "API_PORT": "9000",
            "OSRS_HISCORES_URL": "http://127.0.0.1:8001/",
            "OSRS_DEV": "true",
        }
    )
    assert (s.fetch_interval, s.api_port, s.dev) == (120, 9000, True)
    assert s.hiscores_url == "http://127.0.0.1:8001"


@pytest.mark.parametrize(
    "env", [{"OSRS_FETCH_INTERVAL": "hourly"}, {"OSRS_FETCH_INTERVAL": "0"}, {"API_PORT": "-1"}]
)
def test_malformed_settings_say_which_variable(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_no_jwt_secret_outside_dev_mode_is_refused():
    with pytest.raises(SettingsError, match="OSRS_JWT_SECRET"):
        Settings.from_env({}).signing_secret()
    dev = Settings.from_env({"OSRS_DEV": "1"})
    assert len(dev.signing_secret()) >= 32 and dev.signing_secret() == dev.signing_secret()
