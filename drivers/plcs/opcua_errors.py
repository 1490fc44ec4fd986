"""What went wrong with an OPC UA server, in words a technician can act on.

`status_text` names an OPC UA status code (`BadNodeIdUnknown (0x80340000)`); `connect_error`
turns a failed connect into the driver error family: a security policy the server does not
offer lists the ones it does, a certificate it rejects says so, a user it refuses says so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from asyncua import Client, ua

from drivers.base import DeviceRefused, DeviceUnavailable

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

_POLICY_CODES = {"BadSecurityPolicyRejected", "BadSecurityModeRejected"}
_CERTIFICATE_CODES = {"BadSecurityChecksFailed", "BadNoValidCertificates"}
_USER_CODES = {
    "BadUserAccessDenied",
    "BadIdentityTokenInvalid",
    "BadIdentityTokenRejected",
    "BadUserSignatureInvalid",
}


class ConnectSettings(Protocol):
    """What a connect error reads of the settings (`drivers.plcs.opcua.OpcUaSettings`)."""

    @property
    def endpoint(self) -> str:
        """The server's endpoint URL."""
        ...

    @property
    def security_policy(self) -> str:
        """`None` or a policy name."""
        ...

    @property
    def security_mode(self) -> str:
        """`Sign` or `SignAndEncrypt`."""
        ...

    @property
    def cert_file(self) -> Path | None:
        """This agent's application certificate."""
        ...

    @property
    def username(self) -> str | None:
        """The user logged in as, if any."""
        ...


def status_text(code: int) -> str:
    """`BadNodeIdUnknown (0x80340000)`: the status code's name and number."""
    return f"{ua.StatusCode(code).name} (0x{code:08X})"


async def offered_policies(endpoint: str, timeout_s: float) -> list[str]:
    """The `policy/mode` pairs the server's endpoints offer (asked without security)."""
    client = Client(endpoint, timeout=timeout_s)
    try:
        async with asyncio.timeout(2 * timeout_s):
            endpoints = await client.connect_and_get_server_endpoints()
    except (OSError, TimeoutError, ua.UaError) as exc:
        log.debug("cannot list the endpoints of %s: %s", endpoint, exc)
        return []
    finally:
        client.disconnect_socket()
    offered = []
    for description in endpoints:
        policy = str(description.SecurityPolicyUri).rsplit("#", 1)[-1]
        mode = description.SecurityMode.name.rstrip("_")
        offered.append(policy if policy == "None" else f"{policy}/{mode}")
    return sorted(set(offered))


async def connect_error(
    plc: str, settings: ConnectSettings, exc: BaseException, timeout_s: float
) -> DeviceUnavailable:
    """The driver error for a failed connect, with what the server offers when that helps."""
    where = settings.endpoint
    if isinstance(exc, ua.UaStatusCodeError):
        return await _status_error(plc, settings, exc.code, timeout_s)
    if isinstance(exc, FileNotFoundError | PermissionError | ValueError):
        return DeviceRefused(f"{plc}: cannot use the security files for {where}: {exc}")
    # Some servers (asyncua's among them) do not answer an OpenSecureChannel whose policy they
    # lack: ask what they offer before calling it a timeout.
    if isinstance(exc, TimeoutError | ua.UaError) and (
        refused := await _policy_refused(plc, settings, timeout_s)
    ):
        return refused
    if isinstance(exc, TimeoutError):
        return DeviceUnavailable(f"{plc}: no answer from {where} within {timeout_s:g} s")
    return DeviceUnavailable(f"{plc}: cannot connect to {where}: {exc or type(exc).__name__}")


async def _status_error(
    plc: str, settings: ConnectSettings, code: int, timeout_s: float
) -> DeviceUnavailable:
    where = settings.endpoint
    name = ua.StatusCode(code).name
    status = status_text(code)
    if name in _POLICY_CODES or (
        name == "BadSecurityChecksFailed" and settings.security_policy == "None"
    ):
        refused = await _policy_refused(plc, settings, timeout_s)
        if refused is not None:
            return refused
    if name in _CERTIFICATE_CODES or name.startswith("BadCertificate"):
        return DeviceRefused(
            f"{plc}: {where} rejected this agent's certificate {settings.cert_file} "
            f"({status}); add it to the server's trusted certificates"
        )
    if name in _USER_CODES:
        return DeviceRefused(f"{plc}: {where} refused user {settings.username!r} ({status})")
    return DeviceUnavailable(f"{plc}: cannot connect to {where}: {status}")


async def _policy_refused(
    plc: str, settings: ConnectSettings, timeout_s: float
) -> DeviceRefused | None:
    """A refusal listing the offered policies, if the configured one is not among them."""
    wanted: str = settings.security_policy
    if wanted != "None":
        wanted = f"{wanted}/{settings.security_mode}"
    offered = await offered_policies(settings.endpoint, timeout_s)
    if not offered or wanted in offered:
        return None
    return DeviceRefused(
        f"{plc}: {settings.endpoint} does not offer security policy {wanted}; "
        f"it offers {', '.join(offered)}"
    )
