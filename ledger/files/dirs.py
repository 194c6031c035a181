"""Moltis's directory rules, and the files this library keeps in them.

config dir: --config-dir, else MOLTIS_CONFIG_DIR, else ~/.config/moltis (XDG_CONFIG_HOME
            is not used, as in Moltis)
data dir:   --data-dir, else MOLTIS_DATA_DIR, else ~/.moltis
ledger:     <data dir>/moltis.db (tables prefixed `ledger_`, next to Moltis's own)
ledger key: MOLTIS_LEDGER_KEY, else the file MOLTIS_LEDGER_KEY_FILE, else
            <config dir>/ledger.key — deliberately not in the data dir, so a copy of the
            data dir (and of the database) does not carry the key that opens its secrets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["config_dir", "data_dir", "default_db_path", "default_key_file",
           "discover_config_file"]

CONFIG_FILE_NAMES = ("moltis.toml", "moltis.yaml", "moltis.yml", "moltis.json")
KEYS_FILE_NAME = "provider_keys.json"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _dir(override: str | os.PathLike[str] | None, variable: str,
         env: Mapping[str, str] | None, default: Path) -> Path:
    """The flag, else the variable, else the default (Moltis's order)."""
    chosen = override or _env(env).get(variable)
    return Path(chosen).expanduser() if chosen else default


def config_dir(override: str | os.PathLike[str] | None = None,
               env: Mapping[str, str] | None = None) -> Path:
    return _dir(override, "MOLTIS_CONFIG_DIR", env, Path.home() / ".config" / "moltis")


def data_dir(override: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None) -> Path:
    return _dir(override, "MOLTIS_DATA_DIR", env, Path.home() / ".moltis")


def default_db_path(data: Path) -> Path:
    return data / "moltis.db"


def default_key_file(config: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    value = _env(env).get("MOLTIS_LEDGER_KEY_FILE")
    if value:
        return Path(value).expanduser()
    return (config if config is not None else config_dir(env=env)) / "ledger.key"


def ensure_private_dir(path: Path) -> None:
    """Create a directory and its missing parents, each 0700 whatever the umask;
    existing directories are left alone."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another process made it first
            continue
        os.chmod(folder, 0o700)


_config_home = config_dir  # discover_config_file's argument shadows the name


def discover_config_file(config_dir: str | os.PathLike[str] | None = None,
                         env: Mapping[str, str] | None = None) -> Path:
    """Moltis's rule: the first of moltis.toml, .yaml, .yml, .json in the config dir
    override (`config_dir`, else MOLTIS_CONFIG_DIR) only, or else in `./` and then
    `~/.config/moltis`; if none exists, `<config dir>/moltis.toml`."""
    env = os.environ if env is None else env
    home = _config_home(config_dir, env)
    search = [home] if config_dir or env.get("MOLTIS_CONFIG_DIR") else [Path.cwd(), home]
    for folder in search:
        for name in CONFIG_FILE_NAMES:
            candidate = folder / name
            if candidate.exists():
                return candidate.absolute()
    return (home / "moltis.toml").absolute()
