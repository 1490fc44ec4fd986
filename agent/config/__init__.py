"""The agent's configuration: the TOML file of CONTRACTS.md, loaded once and passed down.

One module per part of the file: `root` (the whole file, `[agent]`, `[store]`, loading),
`status`, `line`, `scanners`, `plcs`, `destinations`, `shifts`; `fields` holds what they share,
`errors` words every problem as `key.path: sentence`, and `preflight` checks what `run` needs
beyond a valid file. This package imports no other room of the agent: each room imports its
section from here.
"""

from agent.config.errors import ConfigError
from agent.config.root import DEFAULT_CONFIG_PATH, Config, load_config, parse_config

__all__ = ["DEFAULT_CONFIG_PATH", "Config", "ConfigError", "load_config", "parse_config"]
