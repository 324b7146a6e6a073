"""Operators' SSH user certificates: an operator's key signed by the fleet's user CA for a few
hours, with only the principals the fleet's policy allows that operator.

The policy is a YAML file:

    operators:
      alice: {principals: [alice, jump-alice], max_hours: 8}
      contractor1: {principals: [contractor1]}

Whoever holds the CA key can sign anything with ssh-keygen; the policy keeps the tool from
issuing more than an operator should have by mistake. Where the CA key sits in SSM Parameter
Store, IAM decides who can read it (and so who can issue at all).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from ansible_collections.ec2fleet.fleet.plugins.module_utils import ssh_ca

from ec2fleet.aws import client_layer

DEFAULT_HOURS = 4
MAX_HOURS = 8
# No agent or X11 forwarding, no user rc; a shell where sshd allows one, and ProxyJump.
OPTIONS = ("clear", "permit-pty", "permit-port-forwarding")


@dataclass
class Grant:
    principals: list[str]
    max_hours: int


def load_policy(path: Path) -> dict[str, Grant]:
    """identity -> Grant, from the policy file; CertError with the file named when it is wrong."""
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ssh_ca.CertError(f"cannot read the certificate policy {path}: {exc.strerror}") from exc
    operators = data.get("operators") if isinstance(data, dict) else None
    if not isinstance(operators, dict) or not operators:
        raise ssh_ca.CertError(f"{path}: expected `operators: {{<name>: {{principals: [...]}}}}`")
    grants = {}
    for name, entry in operators.items():
        principals = (entry or {}).get("principals")
        if not isinstance(principals, list) or not principals or not all(isinstance(p, str) for p in principals):
            raise ssh_ca.CertError(f"{path}: operator {name} needs a list of principals")
        max_hours = int((entry or {}).get("max_hours", MAX_HOURS))
        if not 1 <= max_hours <= 24:
            raise ssh_ca.CertError(f"{path}: operator {name}: max_hours must be 1-24, got {max_hours}")
        grants[str(name)] = Grant(principals=principals, max_hours=max_hours)
    return grants


def certificate_path(public_key_path: Path) -> Path:
    """Where ssh looks for the certificate of an identity: `<key>-cert.pub` beside the key."""
    name = public_key_path.name[:-4] if public_key_path.name.endswith(".pub") else public_key_path.name
    return public_key_path.with_name(f"{name}-cert.pub")


def issue(grants: dict[str, Grant], identity: str, public_key_path: Path, ca_private_key: str,
          principals: list[str] | None = None, hours: int = DEFAULT_HOURS, now: float | None = None) -> dict:
    """Sign the operator's key; write `<key>-cert.pub` beside it; return what was issued."""
    grant = grants.get(identity)
    if grant is None:
        raise ssh_ca.CertError(f"{identity} is not an operator of the certificate policy ({', '.join(sorted(grants))})")
    wanted = list(dict.fromkeys(principals or grant.principals))
    refused = [p for p in wanted if p not in grant.principals]
    if refused:
        raise ssh_ca.CertError(f"{identity} may not have the principal(s) {', '.join(refused)} "
                               f"(allowed: {', '.join(grant.principals)})")
    if not 1 <= int(hours) <= grant.max_hours:
        raise ssh_ca.CertError(f"{identity}: certificates last 1 to {grant.max_hours} hours, not {hours}")
    public_key_path = Path(public_key_path).expanduser()
    try:
        public_key = public_key_path.read_text().strip()
    except OSError as exc:
        raise ssh_ca.CertError(f"cannot read the public key {public_key_path}: {exc.strerror}") from exc
    now = time.time() if now is None else now
    serial = ssh_ca.new_serial(now)
    certificate = ssh_ca.sign(ca_private_key, public_key, cert_type="user", principals=wanted,
                              key_id=f"{identity}@{serial}", serial=serial, valid_for=int(hours) * 3600,
                              now=now, options=list(OPTIONS))
    path = certificate_path(public_key_path)
    path.write_text(certificate + "\n")
    path.chmod(0o644)
    return {"path": str(path), **ssh_ca.describe(ssh_ca.parse_certificate(certificate))}


@contextmanager
def ca_key(path: str = "", ssm_parameter: str = "", region: str | None = None) -> Iterator[str]:
    """The CA private key's path: the file given, or the SSM SecureString read (with decryption)
    into a private temporary file that is removed afterwards."""
    if bool(path) == bool(ssm_parameter):
        raise ssh_ca.CertError("give the CA key as exactly one of a file (--ca-key) and an SSM parameter (--ca-ssm-parameter)")
    if path:
        yield str(Path(path).expanduser())
        return
    _, clients = client_layer.fleet_clients(region=region)
    try:
        value = clients("ssm").get_parameter(Name=ssm_parameter, WithDecryption=True)["Parameter"]["Value"]
    except client_layer.FLEET_AWS_ERRORS as exc:
        raise ssh_ca.CertError(client_layer.format_aws_error(exc, action=f"read the CA key {ssm_parameter}",
                                                             where=clients.where())) from exc
    with ssh_ca.PrivateDir() as work:
        yield ssh_ca.write_private(work, "ca", value)
