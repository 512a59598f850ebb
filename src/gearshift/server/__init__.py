"""The asyncio job server: ``Server(ServerConfig(...))``; ``gearshift serve`` runs one."""

from gearshift.server._config import DEFAULT_PORT, ServerConfig, StartupError, default_data_dir
from gearshift.server._run import run
from gearshift.server._server import Server

__all__ = ["DEFAULT_PORT", "Server", "ServerConfig", "StartupError", "default_data_dir", "run"]
