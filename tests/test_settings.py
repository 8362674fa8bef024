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
            "OSRS_PROGRESS_RETENTION_DAYS": "7",
        }
    )
    assert (s.fetch_interval, s.api_port, s.dev) == (120, 9000, True)
    assert s.progress_retention_days == 7
    assert s.hiscores_url == "http://127.0.0.1:8001"


@pytest.mark.parametrize(
    "env",
    [
        {"OSRS_FETCH_INTERVAL": "hourly"},
        {"OSRS_FETCH_INTERVAL": "0"},
        {"API_PORT": "-1"},
        {"OSRS_PROGRESS_RETENTION_DAYS": "0"},
    ],
)
def test_malformed_settings_say_which_variable(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_no_jwt_secret_outside_dev_mode_is_refused():
    with pytest.raises(SettingsError, match="OSRS_JWT_SECRET"):
        Settings.from_env({}).signing_secret()
    dev = Settings.from_env({"OSRS_DEV": "1"})
    assert len(dev.signing_secret()) >= 32 and dev.signing_secret() == dev.signing_secret()


def test_hardening_defaults_are_closed():
    s = Settings.from_env({})
    assert (s.login_max_failures, s.login_max_failures_per_address, s.login_window) == (5, 20, 300)
    assert (s.max_body_bytes, s.cors_origins, s.trusted_proxies, s.hsts) == (65536, (), (), False)


def test_hardening_settings_from_the_environment():
    s = Settings.from_env(
        {
            "OSRS_LOGIN_MAX_FAILURES": "3",
            "OSRS_LOGIN_MAX_FAILURES_PER_ADDRESS": "50",
            "OSRS_LOGIN_WINDOW": "60",
            "OSRS_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1,::1",
            "OSRS_MAX_BODY_BYTES": "4096",
            "OSRS_CORS_ORIGINS": "https://Dash.Example.com/, http://localhost:5173",
            "OSRS_HSTS": "1",
        }
    )
    assert (s.login_max_failures, s.login_max_failures_per_address, s.login_window) == (3, 50, 60)
    assert s.trusted_proxies == ("10.0.0.0/8", "192.0.2.1", "::1")
    assert s.cors_origins == ("https://dash.example.com", "http://localhost:5173")
    assert (s.max_body_bytes, s.hsts) == (4096, True)


@pytest.mark.parametrize(
    "env",
    [
        {"OSRS_CORS_ORIGINS": "*"},
        {"OSRS_CORS_ORIGINS": "https://*.example.com"},
        {"OSRS_CORS_ORIGINS": "dash.example.com"},
        {"OSRS_CORS_ORIGINS": "https://dash.example.com/app"},
        {"OSRS_CORS_ORIGINS": "https://dash.example.com:port"},
        {"OSRS_TRUSTED_PROXIES": "proxy.internal"},
        {"OSRS_LOGIN_MAX_FAILURES": "0"},
        {"OSRS_LOGIN_WINDOW": "5m"},
        {"OSRS_MAX_BODY_BYTES": "100"},
    ],
)
def test_malformed_hardening_settings_say_which_variable(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_operations_defaults():
    s = Settings.from_env({})
    assert (s.log_format, s.metrics_host, s.shutdown_grace_s) == ("auto", "127.0.0.1", 20.0)
    ports = [s.metrics_port_for(name) for name in ("fetcher", "projector", "scheduler")]
    assert ports == [9101, 9102, 9103]


def test_operations_settings_from_the_environment():
    s = Settings.from_env(
        {
            "OSRS_LOG_FORMAT": "JSON",
            "OSRS_METRICS_HOST": "0.0.0.0",
            "OSRS_METRICS_PORT": "9200",
            "OSRS_SHUTDOWN_GRACE_S": "5.5",
        }
    )
    assert (s.log_format, s.metrics_host, s.shutdown_grace_s) == ("json", "0.0.0.0", 5.5)
    assert s.metrics_port_for("fetcher") == s.metrics_port_for("scheduler") == 9200


def test_metrics_port_zero_turns_the_metrics_server_off():
    assert Settings.from_env({"OSRS_METRICS_PORT": "0"}).metrics_port_for("projector") == 0


@pytest.mark.parametrize(
    "env",
    [
        {"OSRS_LOG_FORMAT": "xml"},
        {"OSRS_METRICS_PORT": "-1"},
        {"OSRS_METRICS_PORT": "70000"},
        {"OSRS_METRICS_PORT": "metrics"},
        {"OSRS_SHUTDOWN_GRACE_S": "0"},
        {"OSRS_SHUTDOWN_GRACE_S": "soon"},
    ],
)
def test_malformed_operations_settings_say_which_variable(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)
