"""A city's first day with the configuration and the CLI (real processes): `--config` before or
after the command and HUB_CONFIG all read the file; relative paths in it mean "next to the
file"; values that cannot work stop the start with the key named in plain words; a port in
use is one line and exit 2; credentials for a channel this build lacks are a warning."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_quickstart import HUB, wait_listening
from tests.support.services import free_port


def hub(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run([*HUB, *args], cwd=cwd, env={**clean, **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=120)


def city(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules").mkdir(exist_ok=True)
    config = folder / "city.toml"
    config.write_text('[database]\nurl = "sqlite+aiosqlite:///city.db"\n[hub]\ndata_dir = "files"\n'
                      f'[routing]\nrules_dir = "rules"\n{extra}')
    return config


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_the_config_file_is_read_wherever_it_is_named(tmp_path: Path, where: str) -> None:
    config, elsewhere = city(tmp_path / "etc"), tmp_path / "elsewhere"
    elsewhere.mkdir()
    add = ["staff", "add", "clerk@city.example", "--name", "Pat", "--role", "agent",
           "--no-password"]
    if where == "before":
        done = hub(["--config", str(config), *add], elsewhere)
    elif where == "after":
        done = hub([*add, "--config", str(config)], elsewhere)
    else:
        done = hub(add, elsewhere, {"HUB_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    # The database and data folder are next to the config file, not where the command ran.
    assert (tmp_path / "etc" / "city.db").exists()
    assert not (elsewhere / "city.db").exists() and not (elsewhere / "hub.db").exists()
    # From yet another folder, the same database: the staff member is there.
    again = hub(["token", "create", "clerk@city.example", "--config", str(config)], tmp_path)
    assert again.returncode == 0, again.stderr


def test_a_bad_config_before_the_command_stops_serve(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp]\nport = 99999\n")
    done = hub(["--config", str(bad), "serve"], tmp_path)
    assert done.returncode == 2 and "smtp.port" in done.stderr
    assert not (tmp_path / "hub.db").exists()


@pytest.mark.parametrize(("extra", "says"), [
    ('[email]\nfrom = "not an address"\n',
     "email.from: 'not an address' is not an email address"),
    ('[smtp]\ndomains = "city.example"\n',
     'smtp.domains: should be a list of domains, e.g. ["city.example"]'),
    ('[routing]\nrules_dir = "no-such-folder"\n', "routing.rules_dir: no folder at"),
])
def test_values_that_cannot_work_stop_the_start_naming_the_key(tmp_path: Path, extra: str,
                                                               says: str) -> None:
    config = tmp_path / "city.toml"
    config.write_text(extra)
    done = hub(["serve", "--config", str(config)], tmp_path)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert "Input should be" not in done.stderr


@pytest.mark.parametrize("key", ["http.port", "smtp.port"])
def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, key: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"HUB_HTTP_PORT": str(free_port()), "HUB_SMTP_PORT": str(free_port())}
        ports["HUB_HTTP_PORT" if key == "http.port" else "HUB_SMTP_PORT"] = str(port)
        done = hub(["serve", "--config", str(city(tmp_path))], tmp_path, ports)
    assert done.returncode == 2, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("hub:")]
    assert f"({key})" in line and str(port) in line and "Traceback" not in done.stderr


def test_serve_names_its_database_and_folder_and_warns_of_unbuilt_channels(
        tmp_path: Path) -> None:
    config = city(tmp_path / "etc", '[twilio]\naccount_sid = "AC123"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_HTTP_PORT=str(free_port()), HUB_SMTP_PORT=str(free_port()))
    process = subprocess.Popen([*HUB, "serve", "--config", str(config)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = wait_listening(process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    text = "\n".join(lines)
    assert f"database sqlite {tmp_path / 'etc' / 'city.db'}" in text
    assert f"data folder {tmp_path / 'etc' / 'files'}" in text
    assert "[twilio] account_sid is set, but auth_token is empty: the sms channel is off" in text
