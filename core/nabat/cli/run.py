"""``nabat run``: the hub until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import click

from ..config import LoadedConfig
from ..logs import configure_logging, get_logger
from ..runtime import apply_runtime_settings
from ._common import build_hub, config_option, config_path, exit_with_error, load_or_exit, messages

__all__ = ["command"]

log = get_logger("nabat.cli")


@click.command("run")
@config_option
def command(config_file: str | None) -> None:
    """Run the hub until Ctrl-C or SIGTERM."""
    path = config_path(config_file)
    loaded = load_or_exit(path, strict=False)  # a broken instance table fails only itself
    hub_cfg = loaded.config.hub
    configure_logging(hub_cfg.log_level, hub_cfg.log_format)
    apply_runtime_settings(hub_cfg)
    click.echo(messages(loaded)("cli.hub_starting", name=hub_cfg.name, path=path), err=True)
    try:
        asyncio.run(_serve(loaded))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        raise SystemExit(130) from None
    click.echo(messages(loaded)("cli.hub_stopped"), err=True)


async def _serve(loaded: LoadedConfig) -> None:
    from ..store import JournalError

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        # A second Ctrl-C forces the exit. A repeated SIGTERM does not: supervisors and
        # `uv run` may deliver it twice (to the process group and forwarded).
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info("hub.stopping", signal=name)
            stop.set()
        elif signum == signal.SIGINT:
            log.warning("hub.forced_exit", signal=name)
            os._exit(130)
        else:
            log.info("hub.already_stopping", signal=name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    hub = build_hub(loaded)
    api: Any = None
    try:
        try:
            await hub.start(wait=True)
        except JournalError as exc:
            log.error("journal.unavailable", error=str(exc))
            exit_with_error(exc)
        for issue in hub.issues:
            log.error(
                "config.problem",
                file=issue.file,
                line=issue.line,
                key=issue.path,
                reason=issue.reason,
            )
        if loaded.config.api.listen is not None:
            from ..api.server import ApiServer

            api = ApiServer(hub)
            try:
                await api.start()
            except OSError as exc:
                log.error("api.unavailable", error=str(exc))
                exit_with_error(exc)
        await stop.wait()
    finally:
        if api is not None:
            await api.stop()
        await hub.stop()
