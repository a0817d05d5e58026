"""``campaigns keys``: make the keys that protect patient contacts, and rotate them."""

from __future__ import annotations

import typer
from rich.console import Console

from campaigns import field_crypto
from campaigns.key_rotation import reencrypt_patients
from campaigns.runtime import build_runtime
from config.settings import ENV_PREFIX, SettingsError, get_settings

keys_app = typer.Typer(help="Encryption keys for patient phone numbers and emails.",
                       no_args_is_help=True)  # fmt: skip
console = Console()
err = Console(stderr=True)


@keys_app.command("new")
def new() -> None:
    """Print a fresh key pair as environment lines, for the deployment's secret store.

    To rotate the data key, put the new key first and keep the old one after a comma:
    ``CAMPAIGNS_DATA_KEYS=new,old``; run ``campaigns keys reencrypt``; then drop the old one.
    """
    keys = field_crypto.new_keys()
    print(f"{ENV_PREFIX}DATA_KEYS={keys['data']}")
    print(f"{ENV_PREFIX}LOOKUP_KEY={keys['lookup']}")


@keys_app.command("reencrypt")
def reencrypt() -> None:
    """Re-encrypt every patient's contacts under the first data key and re-hash them with the
    current lookup key. Safe to stop and run again."""
    try:
        rt = build_runtime(get_settings())
    except (SettingsError, field_crypto.FieldKeyError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    result = reencrypt_patients(rt.session, field_crypto.active())
    console.print(f"re-encrypted {result.patients} patient(s)")
    if result.unreadable:
        ids = ", ".join(str(i) for i in result.unreadable[:20])
        err.print(
            f"[bold red]error:[/] {len(result.unreadable)} patient(s) are not readable with "
            f"any configured key (ids {ids}); add the key they were written with to "
            f"{ENV_PREFIX}DATA_KEYS and run again",
            highlight=False,
        )
        raise typer.Exit(1)
