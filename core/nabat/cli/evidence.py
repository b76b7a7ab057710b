"""``nabat evidence``: check an evidence export, show the hub's signing key.

``verify`` needs neither a configuration, a running hub nor a database — it is what the
police run on the directory they were handed, pinning the key fingerprint the ЕДДС gave them.
``key`` reads (or, the first time, creates) the key in the configured ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ._common import config_option, config_path, exit_with_error, load_or_exit, quiet_logs

__all__ = ["command"]

_MARK = {"ok": "[ok]  ", "failed": "[FAIL]", "warning": "[note]"}


@click.group("evidence")
def command() -> None:
    """Evidence exports: verify one, show the hub's signing key."""


def _pin(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ..evidence.keys import valid_pin

    if value is not None and not valid_pin(value):
        raise click.BadParameter(
            "give the hub's public key (base64, 44 characters) or its fingerprint (64 hex "
            "digits, spaces allowed)"
        )
    return value


@command.command("verify")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path)
)
@click.option(
    "--key",
    "expected",
    metavar="BASE64_OR_FINGERPRINT",
    callback=_pin,
    help="The hub's public key or fingerprint, as the ЕДДС gave it: the export must be "
    "signed by it (without it anyone's signature passes, with a warning).",
)
def verify_command(directory: Path, expected: str | None) -> None:
    """Check the export in DIRECTORY: the manifest's signature, the signing key, every
    file's size and SHA-256, no unlisted files. Exit 0 valid, 1 invalid."""
    from ..evidence.verify import verify

    result = verify(directory, expected)
    for check in result.checks:
        click.echo(f"{_MARK[check.status]} {check.name}: {check.reason}")
    if result.valid:
        click.echo("VALID" + ("" if expected else " (signer not pinned: see [note] above)"))
        return
    click.echo("INVALID")
    raise SystemExit(1)


@command.command("key")
@config_option
def key_command(config_file: str | None) -> None:
    """The hub's evidence signing key (created in data_dir the first time): its public key
    and fingerprint, to give the police out of band."""
    from ..evidence.keys import SigningKeyError, load_or_create_key

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file), strict=False)
    try:
        key = load_or_create_key(loaded.data_dir)
    except (SigningKeyError, OSError) as exc:
        exit_with_error(exc)
    click.echo(f"file:        {key.path}")
    click.echo(f"public key:  {key.public_key}")
    click.echo(f"fingerprint: {key.fingerprint}")
