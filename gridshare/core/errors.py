"""The project's errors, in one place. Each carries a one-line, actionable message."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from gridshare.core.payloads import QuarantineReason

URL_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>()]+", re.IGNORECASE)
PATH_RE = re.compile(r"(?<![\w:/.])(?:/[\w.@+-]+){2,}/?")


class GridshareError(Exception):
    """Base of every error gridshare reports to a user as one line."""


class ConfigError(GridshareError):
    """A setting is missing or malformed."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"configuration: {setting} {redact(problem)}")
        self.setting = setting


class ServiceUnreachable(GridshareError):
    """A dependency (database, broker, chain) cannot be reached."""

    def __init__(self, service: str, setting: str, url: str, cause: object) -> None:
        super().__init__(
            f"{service} unreachable at {redact_url(url)} ({redact(_short(cause))}); check "
            f"{setting} or start the local stack with `gridshare stack up`"
        )
        self.service = service
        self.setting = setting


class StackError(GridshareError):
    """A local-stack service failed to start, stop or become healthy."""


class MigrationError(GridshareError):
    """A schema migration could not be applied; the database is left at the previous one."""


class NotDeployed(GridshareError):
    """The contracts have no deployment record for this chain yet."""


class ContractRevert(GridshareError):
    """A transaction was refused on-chain; the message names the decoded custom error."""

    def __init__(self, message: str, error_name: str = "", error_args: tuple = ()) -> None:
        super().__init__(message)
        self.error_name = error_name
        self.error_args = error_args


class PayloadError(GridshareError, ValueError):
    """A message that cannot become a `Telemetry`, with the quarantine reason (a ValueError
    too, so pydantic validators may raise it)."""

    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SignatureError(GridshareError, ValueError):
    """The signature is malformed or does not recover to an address (a ValueError too, as
    the key libraries' own errors are)."""


def _short(cause: object) -> str:
    text = str(cause).strip().splitlines()
    return text[0][:200] if text else type(cause).__name__


def redact_url(url: str) -> str:
    """`scheme://host:port` of a URL: no credentials, no path or query (which may hold keys)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<url>"
    return f"{parts.scheme}://{host}{port}"


def redact(text: str, paths: bool = False) -> str:
    """`text` with every URL cut to scheme, host and port, and (with `paths`) every
    file-system path cut to its last part: for messages that leave the process."""
    text = URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    if paths:
        text = PATH_RE.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)
    return text
