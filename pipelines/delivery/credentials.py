"""SFTP credentials: a private key without a passphrase and/or a password, offered in that order.

The password comes from the caller (a Prefect Secret block resolved by the flow) or from the
environment (`passwordEnv`, read at call time); it is a SecretStr throughout and never reaches a log
or a message."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
from paramiko.pkey import UnknownKeyType
from pydantic import SecretStr

from pipelines.model.config import Home, SftpSetting
from pipelines.model.errors import ErrorItem, InvalidInputError


def credentials(
    setting: SftpSetting, home: Home, password: SecretStr | None
) -> tuple[paramiko.PKey | None, SecretStr | None]:
    """The private key and the password to offer, in that order; InvalidInputError when there is neither."""
    source = f"SFTP setting for {setting.host}:{setting.port}"
    pkey = _private_key(home.path(setting.privateKeyFile), source) if setting.privateKeyFile else None
    from_env = os.environ.get(setting.passwordEnv) if setting.passwordEnv else None
    # The password is a SecretStr from here on: its repr and str are masked wherever it travels.
    secret = password if password is not None and password.get_secret_value() else None
    if secret is None and from_env:
        secret = SecretStr(from_env)
    if pkey is None and secret is None:
        raise InvalidInputError(source, [_missing_password(setting)])
    return pkey, secret


def _private_key(path: Path, source: str) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise InvalidInputError(source, [ErrorItem("/privateKeyFile", f"{path} does not exist")]) from None
    except TypeError:
        # cryptography: "Password was not given but private key is encrypted"
        raise InvalidInputError(
            source,
            [
                ErrorItem(
                    "/privateKeyFile",
                    f"{path} is passphrase-protected; use a dedicated key without a passphrase "
                    "(readable only by the service account) or password authentication",
                )
            ],
        ) from None
    except (OSError, ValueError, UnknownKeyType, paramiko.SSHException) as exc:
        raise InvalidInputError(
            source,
            [
                ErrorItem(
                    "/privateKeyFile",
                    f"cannot load {path} as an ed25519, ECDSA or RSA private key ({exc.__class__.__name__})",
                )
            ],
        ) from None


def _missing_password(setting: SftpSetting) -> ErrorItem:
    if setting.passwordEnv:
        return ErrorItem(
            "/passwordEnv",
            f"environment variable {setting.passwordEnv} is not set; export it with the SFTP password",
        )
    return ErrorItem(
        "/passwordSecretBlock",
        f"no password was resolved from Prefect Secret block {setting.passwordSecretBlock!r}; "
        "create the block or run through the flow that resolves it",
    )


def auth_method(setting: SftpSetting, pkey: paramiko.PKey | None, secret: SecretStr | None) -> str:
    methods = []
    if pkey is not None:
        methods.append(f"key {setting.privateKeyFile}")
    if secret is not None:
        methods.append(f"password from {setting.passwordEnv or setting.passwordSecretBlock or 'the caller'}")
    return " then ".join(methods)


def authenticate(
    transport: paramiko.Transport, username: str, pkey: paramiko.PKey | None, secret: SecretStr | None
) -> None:
    if pkey is not None:
        try:
            transport.auth_publickey(username, pkey)
        except paramiko.AuthenticationException:
            if secret is None or not transport.is_active():
                raise
    if not transport.is_authenticated() and secret is not None:
        transport.auth_password(username, secret.get_secret_value())
    if not transport.is_authenticated():
        raise paramiko.AuthenticationException("further authentication required")
