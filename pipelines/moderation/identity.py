"""Who is asking: the moderator named by the authenticating proxy, and the forms they were given.

The platform's proxy authenticates moderators and names them in a header (``X-Forwarded-User``
by default). The app believes that header only on connections from the proxy's own addresses
(``--trusted-proxy``), so nobody who reaches the app directly can name themselves. ``--dev-user``
names one moderator for a local run instead.

Forms carry a token that only the app can make (an HMAC of the moderator's name under a secret
key), so a page on another site cannot make a moderator's browser decide a video.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field

MAX_NAME_CHARS = 200
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NoIdentity(PermissionError):
    """The request names no moderator the app may believe."""


def parse_networks(addresses: list[str]) -> tuple[IpNetwork, ...]:
    """``--trusted-proxy`` values (an address or a network, ``10.0.0.0/8``) as networks."""
    networks = []
    for address in addresses:
        try:
            networks.append(ipaddress.ip_network(address.strip(), strict=False))
        except ValueError as err:
            raise ValueError(
                f"--trusted-proxy {address!r} is not an IP address or network"
            ) from err
    return tuple(networks)


@dataclass(frozen=True)
class IdentityRules:
    """Where the moderator's name comes from."""

    header: str = "X-Forwarded-User"
    trusted: tuple[IpNetwork, ...] = ()
    dev_user: str | None = None

    def check(self) -> IdentityRules:
        if not self.trusted and not self.dev_user:
            raise ValueError(
                "no moderator could ever be named: give --trusted-proxy ADDRESS (the "
                "authenticating proxy) or --dev-user NAME (a local run)"
            )
        if self.dev_user is not None:
            check_name(self.dev_user)
        return self

    def reviewer(self, peer: str | None, headers: dict[str, str] | object) -> str:
        """The moderator of a request from ``peer`` with ``headers``; NoIdentity when none."""
        if self.dev_user:
            return self.dev_user
        if peer is None or not self._trusted(peer):
            raise NoIdentity(
                f"this request did not come through the authenticating proxy, so its "
                f"{self.header} header is not believed; sign in through the platform"
            )
        name = headers.get(self.header)  # type: ignore[attr-defined]
        if not name or not name.strip():
            raise NoIdentity(f"the proxy named no moderator ({self.header} is missing)")
        return check_name(name.strip())

    def _trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)


def check_name(name: str) -> str:
    if len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise NoIdentity("the moderator's name is too long or holds control characters")
    return name


@dataclass(frozen=True)
class FormTokens:
    """CSRF tokens: the same moderator always gets the same token from the same key."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def token(self, reviewer: str) -> str:
        return hmac.new(self.key, f"form:{reviewer}".encode(), hashlib.sha256).hexdigest()

    def valid(self, reviewer: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.token(reviewer), str(token))
