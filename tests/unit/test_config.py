"""Configuration: validated once, problems named by their key, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli import main
from hub.config import ConfigError, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_config_means_embedded_defaults() -> None:
    settings = load_settings(None, environ={})
    assert settings.embedded
    assert settings.database.url == "sqlite+aiosqlite:///hub.db"
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8080)
    assert (settings.smtp.host, settings.smtp.port) == ("127.0.0.1", 2525)


def test_the_example_config_is_valid_as_it_is() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert settings.embedded and settings.routing.default_queue == "general"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[http]\nport = 9000\n')
    settings = load_settings(path, environ={"HUB_HTTP_PORT": "9100",
                                            "HUB_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert settings.http.port == 9100 and not settings.embedded


@pytest.mark.parametrize(("text", "key", "words"), [
    ("[smtp]\nprot = 25\n", "smtp.prot", "unknown key"),
    ("[bogus]\nx = 1\n", "bogus", "unknown key"),
    ("[http]\nport = \"eighty\"\n", "http.port", "integer"),
    ("[http]\nport = 70000\n", "http.port", "65535"),
    ('[hub]\npublic_url = "not a url"\n', "hub.public_url", "URL"),
    ('[database]\nurl = "mysql://x"\n', "database.url", "sqlite+aiosqlite"),
    ('[redis]\nurl = "http://x"\n', "redis.url", "redis://"),
    ("[smtp\n", "", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    message = str(caught.value)
    assert f": {key}: " in message or not key
    assert words in message


def test_bad_config_stops_a_command_with_exit_2_and_the_key(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    path = write(tmp_path, "[smtp]\nport = -1\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "smtp.port" in err and "Traceback" not in err


def test_secrets_never_show_in_reprs_or_errors(tmp_path: Path) -> None:
    path = write(tmp_path, '[twilio]\nauth_token = "s3cr3t-value"\n[email]\n'
                           'relay_password = "hunter2"\n')
    settings = load_settings(path, environ={})
    assert "s3cr3t-value" not in repr(settings) and "hunter2" not in repr(settings)
    bad = write(tmp_path, '[twilio]\nauth_token = "s3cr3t-value"\nnope = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(bad, environ={})
    assert "s3cr3t-value" not in str(caught.value)


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_provider_libraries_do_not_log_requests_at_info() -> None:
    """twilio logs each API request and httpx (python-telegram-bot) each URL, which holds the
    bot's token: at the hub's INFO level neither reaches the log; their warnings do."""
    import logging

    from hub.cli import configure_logging

    configure_logging(Settings())
    for name in ("twilio.http_client", "httpx", "telegram.ext"):
        logger = logging.getLogger(name)
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
