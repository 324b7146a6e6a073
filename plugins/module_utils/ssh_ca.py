"""OpenSSH certificates: read one, decide whether it must be signed again, sign with ssh-keygen.

Shared by the ``ssh_cert`` module (host certificates, on the controller) and the ops tooling
(operators' user certificates). The certificate is read from its wire format (PROTOCOL.certkeys
in OpenSSH), not from ``ssh-keygen -L``, whose times are in the controller's local time zone.
Signing runs ``ssh-keygen -s`` in a private temporary directory; nothing here ever runs on a
fleet host.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import shutil
import struct
import subprocess
import tempfile

CERT_SUFFIX = "-cert-v01@openssh.com"
FOREVER = 0xFFFFFFFFFFFFFFFF
USER, HOST = 1, 2
# Length-prefixed fields between the nonce and the serial, by the certified key's type.
_KEY_FIELDS = {
    "ssh-ed25519": 1,
    "ssh-rsa": 2,
    "ssh-dss": 4,
    "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "sk-ssh-ed25519@openssh.com": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,
}
DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Certificates start this long before they are signed: a host whose clock is a little behind
# the controller's still accepts them.
BACKDATE = 300


class CertError(Exception):
    """A key, certificate or CA that cannot be used; the message is one line for the operator."""


def duration(value) -> int:
    """Seconds from an int or a string like ``30d``, ``8h``, ``90m`` (s, m, h, d, w)."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = DURATION.match(str(value))
        if not match:
            raise CertError(f"{value!r} is not a duration: give a number with s, m, h, d or w (e.g. 30d, 8h)")
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise CertError(f"duration {value!r} must be positive")
    return seconds


def key_blob(line: str) -> tuple[str, bytes]:
    """(type, decoded blob) of an OpenSSH public key or certificate line."""
    parts = (line or "").split()
    if len(parts) < 2:
        raise CertError(f"not an OpenSSH public key line: {line[:60]!r}")
    try:
        return parts[0], base64.b64decode(parts[1], validate=True)
    except (ValueError, TypeError) as exc:
        raise CertError(f"not an OpenSSH public key line (bad base64): {line[:60]!r}") from exc


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def _take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise CertError("truncated certificate")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def uint32(self) -> int:
        return struct.unpack(">I", self._take(4))[0]

    def uint64(self) -> int:
        return struct.unpack(">Q", self._take(8))[0]

    def string(self) -> bytes:
        return self._take(self.uint32())


def _strings(blob: bytes) -> list[str]:
    reader, out = _Reader(blob), []
    while reader.pos < len(blob):
        out.append(reader.string().decode())
    return out


def _pairs(blob: bytes) -> list[str]:
    """Names of the critical options or extensions (their values are not needed here)."""
    reader, names = _Reader(blob), []
    while reader.pos < len(blob):
        names.append(reader.string().decode())
        reader.string()
    return names


def _wire_string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def plain_type(cert_type: str) -> str:
    base = cert_type[: -len(CERT_SUFFIX)]
    return base + "@openssh.com" if base.startswith("sk-") else base


def parse_certificate(line: str) -> dict:
    """The fields of an OpenSSH certificate line; CertError when it is not one."""
    kind, blob = key_blob(line)
    if not kind.endswith(CERT_SUFFIX):
        raise CertError(f"{kind} is a plain key, not a certificate")
    subject_type = plain_type(kind)
    if subject_type not in _KEY_FIELDS:
        raise CertError(f"unsupported certificate type {kind}")
    reader = _Reader(blob)
    if reader.string().decode() != kind:
        raise CertError("certificate type and blob disagree")
    reader.string()  # nonce
    start = reader.pos
    for _field in range(_KEY_FIELDS[subject_type]):
        reader.string()
    subject = _wire_string(subject_type.encode()) + blob[start:reader.pos]
    serial = reader.uint64()
    cert_type = reader.uint32()
    key_id = reader.string().decode()
    principals = _strings(reader.string())
    valid_after, valid_before = reader.uint64(), reader.uint64()
    options = _pairs(reader.string())
    extensions = _pairs(reader.string())
    reader.string()  # reserved
    signer = reader.string()
    return {
        "type": "host" if cert_type == HOST else "user",
        "key_type": subject_type,
        "public_key": f"{subject_type} {base64.b64encode(subject).decode()}",
        "serial": serial,
        "key_id": key_id,
        "principals": principals,
        "valid_after": valid_after,
        "valid_before": valid_before,
        "critical_options": options,
        "extensions": extensions,
        "signing_ca": _ca_line(signer),
    }


def _ca_line(blob: bytes) -> str:
    return f"{_Reader(blob).string().decode()} {base64.b64encode(blob).decode()}"


def same_key(a: str, b: str) -> bool:
    """Whether two public key lines hold the same key (comments ignored)."""
    return key_blob(a) == key_blob(b)


def iso(timestamp: int) -> str:
    if timestamp >= FOREVER:
        return "forever"
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(cert: dict) -> dict:
    """What a module returns about a certificate: readable times, no key material but the CA's."""
    return {
        "type": cert["type"],
        "key_id": cert["key_id"],
        "serial": cert["serial"],
        "principals": cert["principals"],
        "valid_after": iso(cert["valid_after"]),
        "valid_before": iso(cert["valid_before"]),
        "signing_ca": cert["signing_ca"],
        "extensions": cert["extensions"],
    }


def resign_reasons(cert: dict | None, *, public_key: str, ca_public_key: str, cert_type: str,
                   principals: list[str], renew_before: int, now: float) -> list[str]:
    """Why the certificate must be signed again; empty when it can stay."""
    if cert is None:
        return ["no certificate yet"]
    reasons = []
    if not same_key(cert["public_key"], public_key):
        reasons.append("it certifies another key (the key was replaced)")
    if not same_key(cert["signing_ca"], ca_public_key):
        reasons.append("another CA signed it (CA rotation)")
    if cert["type"] != cert_type:
        reasons.append(f"it is a {cert['type']} certificate, not a {cert_type} one")
    if sorted(set(cert["principals"])) != sorted(set(principals)):
        reasons.append(f"its principals {sorted(cert['principals'])} are not {sorted(set(principals))}")
    if cert["valid_after"] > now + BACKDATE:
        reasons.append(f"it is not valid before {iso(cert['valid_after'])}")
    if cert["valid_before"] != FOREVER and cert["valid_before"] - now <= renew_before:
        state = "expired" if cert["valid_before"] <= now else "expires"
        reasons.append(f"it {state} {iso(cert['valid_before'])}, within the renewal window")
    return reasons


def _keygen(args: list[str], what: str) -> str:
    if not shutil.which("ssh-keygen"):
        raise CertError("ssh-keygen is not installed on the controller (package openssh-client)")
    # TZ=UTC: ssh-keygen reads -V times in the local time zone.
    proc = subprocess.run(["ssh-keygen", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, "TZ": "UTC"}, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())
        raise CertError(f"cannot {what}: ssh-keygen: {detail}")
    return proc.stdout


class PrivateDir:
    """A 0700 temporary directory removed with everything in it, even on errors."""

    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(prefix="ec2fleet-ssh-ca-")
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def write_private(directory: str, name: str, content: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content if content.endswith("\n") else content + "\n")
    return path


def ca_public_key(ca_private_key_path: str) -> str:
    """The CA's public key line, from its private key file."""
    line = _keygen(["-y", "-f", ca_private_key_path], f"read the CA key {ca_private_key_path}").strip()
    kind = key_blob(line)[0]
    return f"{kind} {line.split()[1]}"


def _utc(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y%m%d%H%M%S")


def sign(ca_private_key_path: str, public_key: str, *, cert_type: str, principals: list[str], key_id: str,
         serial: int, valid_for: int, now: float, options: list[str] = ()) -> str:
    """A certificate line for ``public_key``, valid from a little before ``now`` for ``valid_for`` s.

    ``options`` go to ``ssh-keygen -O`` (user certificates: e.g. ``clear``, ``permit-pty``)."""
    kind = key_blob(public_key)[0]
    if kind.endswith(CERT_SUFFIX):
        raise CertError("give the plain public key to sign, not a certificate")
    if not principals:
        raise CertError("a certificate needs at least one principal")
    bad = [p for p in principals if not p or "," in p or any(c.isspace() for c in p)]
    if bad:
        raise CertError(f"principals may not be empty or hold commas or spaces: {bad}")
    with PrivateDir() as work:
        key_path = write_private(work, "key.pub", public_key.strip())
        args = ["-q", "-s", ca_private_key_path, "-I", key_id, "-n", ",".join(principals),
                "-V", f"{_utc(now - BACKDATE)}:{_utc(now + valid_for)}", "-z", str(serial)]
        if cert_type == "host":
            args.append("-h")
        for option in options:
            args += ["-O", option]
        _keygen([*args, key_path], f"sign the {cert_type} key {key_id!r}")
        with open(os.path.join(work, "key-cert.pub")) as handle:
            return handle.read().strip()


def new_serial(now: float) -> int:
    """Serials are the signing time in microseconds: unique per CA in practice, and ordered."""
    return int(now * 1_000_000)
