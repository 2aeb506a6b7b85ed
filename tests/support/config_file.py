"""A TOML config file for CLI tests: the test's own Settings written out, so that `hub ... --config`
opens the same database, data folder and (created, empty) rules folder as the test's hub."""

from __future__ import annotations

from pathlib import Path

from hub.config import Settings


def config_file(settings: Settings, folder: Path) -> Path:
    settings.routing.rules_dir.mkdir(exist_ok=True)
    path = folder / "hub.toml"
    path.write_text(f'[hub]\ndata_dir = "{settings.hub.data_dir}"\nsecret_key = "test-secret"\n'
                    f'[database]\nurl = "{settings.database.url}"\nmigrate_on_start = false\n'
                    f'[smtp]\nenabled = false\n'
                    f'[routing]\nrules_dir = "{settings.routing.rules_dir}"\nwatch = false\n')
    return path
