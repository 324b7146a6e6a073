"""The fleet's `@cert-authority` lines in an SSH known_hosts file: trust the host CA, not each key.

One line per CA public key (two during a rotation), for the fleet's address ranges written as
known_hosts patterns (globs, not CIDRs) plus a few names. The lines carry a marker comment with
the fleet's name, so writing them again replaces exactly them and leaves every other line alone.
Nothing per address is stored: an instance that comes back at a reused address with a new key and
a certificate is accepted, with no line to delete.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path

from ansible_collections.ec2fleet.fleet.plugins.module_utils.ssh_ca import CertError, key_blob

MARKER = "ec2fleet-host-ca"
# Patterns a range may expand to before it is refused (a /20 is 16, a /8 one).
MAX_PATTERNS = 256


def cidr_patterns(cidr: str) -> list[str]:
    """known_hosts patterns matching exactly the IPv4 addresses of ``cidr``: ``10.213.0.0/16`` is
    ``10.213.*``; a prefix off an octet boundary lists the partial octet's values."""
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError as exc:
        raise CertError(f"{cidr!r} is not an address range (CIDR): {exc}") from exc
    if net.version != 4:
        raise CertError(f"{cidr}: only IPv4 ranges can be written as known_hosts patterns; give the addresses")
    if net.prefixlen == 32:
        return [str(net.network_address)]
    octets = str(net.network_address).split(".")
    whole, spare = divmod(net.prefixlen, 8)
    head = octets[:whole]
    if not spare:
        return [".".join([*head, "*"])]
    first = int(octets[whole])
    values = range(first, first + 2 ** (8 - spare))
    if len(values) > MAX_PATTERNS:
        raise CertError(f"{cidr} expands to {len(values)} patterns; split it")
    tail = [] if whole == 3 else ["*"]
    return [".".join([*head, str(value), *tail]) for value in values]


def ca_lines(name: str, ranges: list[str], names: list[str], ca_public_keys: list[str]) -> list[str]:
    """The `@cert-authority` lines of fleet ``name``: one per CA key, for ranges and names."""
    patterns = [p for cidr in ranges for p in cidr_patterns(cidr)] + [n.strip() for n in names if n.strip()]
    patterns = list(dict.fromkeys(patterns))
    if not patterns:
        raise CertError("no address range or name to trust the host CA for")
    if not ca_public_keys:
        raise CertError("no host CA public key given")
    lines = []
    for key in ca_public_keys:
        kind, _ = key_blob(key)
        lines.append(f"@cert-authority {','.join(patterns)} {kind} {key.split()[1]} {MARKER}:{name}")
    return lines


def replace_lines(text: str, name: str, lines: list[str]) -> str:
    """known_hosts ``text`` with fleet ``name``'s lines replaced by ``lines`` (others untouched)."""
    kept = [line for line in text.splitlines() if not line.rstrip().endswith(f" {MARKER}:{name}")]
    return "\n".join([*kept, *lines]) + "\n"


def write(path: Path, name: str, lines: list[str]) -> bool:
    """Write fleet ``name``'s lines into the known_hosts file ``path``; True when it changed."""
    path = Path(path).expanduser()
    old = path.read_text() if path.exists() else ""
    new = replace_lines(old, name, lines)
    if new == old:
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(new)
    os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o600)
    os.replace(tmp, path)
    return True
