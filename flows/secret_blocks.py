"""Prefect Secret blocks: where an SFTP setting's password comes from when it names a
`passwordSecretBlock` (configs never hold the password itself)."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from pipelines.model.config import SftpSetting
from pipelines.model.errors import TerminalError


def sftp_password(setting: SftpSetting) -> SecretStr | None:
    """The password of a `passwordSecretBlock` SFTP setting, read from its block on the Prefect server
    this process talks to; None when the setting names no block."""
    if not setting.passwordSecretBlock:
        return None
    from prefect.blocks.system import Secret

    try:
        block: Any = Secret.load(setting.passwordSecretBlock)
    except ValueError as exc:  # no such block on this Prefect server
        raise TerminalError(
            f"Prefect Secret block {setting.passwordSecretBlock!r} (sftp passwordSecretBlock) cannot be "
            f"loaded ({exc}); create it (prefect block create secret) on the server this home uses"
        ) from None
    return SecretStr(str(block.get()))  # masked from the moment it is resolved
