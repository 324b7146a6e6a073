#!/usr/bin/python
"""Ansible module: sign an SSH key with the fleet's CA where the CA key lives (the controller),
and only when the installed certificate no longer fits."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ssh_cert
short_description: Sign an SSH host or user key with a CA on the controller, when its certificate needs it
description:
  - Reads the certificate installed for a key (O(certificate)) and signs the key again with the
    CA only when that certificate is missing, certifies another key, was signed by another CA
    (rotation), has other principals, is not yet valid, or expires within O(renew_before).
    Otherwise nothing changes and the installed certificate is returned as it is.
  - Runs where the CA's private key is (C(delegate_to) C(localhost)); the key never reaches the host
    whose key is signed. The CA's private key is a file on the controller (O(ca_private_key)) or an
    SSM Parameter Store C(SecureString) (O(ca_private_key_ssm_parameter)), read with decryption on
    the controller into a private temporary file that is removed after signing.
  - Signing uses C(ssh-keygen -s) on the controller. The certificate is valid from 5 minutes before
    signing (clock skew) for O(valid_for); its serial is the signing time in microseconds.
  - Supports check mode (reports whether it would sign; signs nothing).
version_added: "1.0.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  public_key:
    description: The public key to certify (one OpenSSH public key line), e.g. the host's C(ssh_host_ed25519_key.pub).
    type: str
    required: true
  certificate:
    description: The certificate installed now (one line); empty when there is none.
    type: str
    default: ""
  type:
    description: A V(host) certificate (C(HostCertificate)) or a V(user) one (C(TrustedUserCAKeys)).
    type: str
    choices: [host, user]
    default: host
  principals:
    description:
      - Host names and addresses (host) or principals (user) the certificate is valid for.
      - Duplicates are dropped; the order does not matter when comparing.
    type: list
    elements: str
    required: true
  key_id:
    description: The certificate's key id (logged by sshd on every use; KRLs can revoke by it).
    type: str
    required: true
  valid_for:
    description: How long a new certificate is valid, a number with C(s), C(m), C(h), C(d) or C(w), e.g. V(30d).
    type: str
    default: 30d
  renew_before:
    description: Sign again when the installed certificate expires within this long (same format as O(valid_for)).
    type: str
    default: 7d
  options:
    description: C(ssh-keygen -O) options of a new user certificate (e.g. V(clear), V(permit-pty)); none for hosts.
    type: list
    elements: str
    default: []
  ca_private_key:
    description: Path of the CA's private key on the controller (unencrypted; mode 0600).
    type: path
  ca_private_key_ssm_parameter:
    description: Name of the SSM C(SecureString) parameter holding the CA's private key (OpenSSH format).
    type: str
notes:
  - With O(ca_private_key_ssm_parameter), needs C(ssm:GetParameter) on the parameter and C(kms:Decrypt)
    on its key.
seealso:
  - name: PROTOCOL.certkeys
    description: The OpenSSH certificate format.
    link: https://github.com/openssh/openssh-portable/blob/master/PROTOCOL.certkeys
"""

EXAMPLES = r"""
- name: Read the host's public key and its certificate
  ansible.builtin.slurp:
    src: "{{ item }}"
  loop: [/etc/ssh/ssh_host_ed25519_key.pub, /etc/ssh/ssh_host_ed25519_key-cert.pub]
  register: host_key_files
  failed_when: false

- name: Sign the host key with the fleet's host CA when needed
  ec2fleet.fleet.ssh_cert:
    public_key: "{{ host_key_files.results[0].content | b64decode }}"
    certificate: "{{ host_key_files.results[1].content | default('') | b64decode }}"
    principals: ["{{ ec2_instance_id }}", "{{ ec2_private_ip_address }}", "{{ inventory_hostname }}"]
    key_id: "{{ inventory_hostname }}"
    ca_private_key_ssm_parameter: /fleet/ssh/host-ca
    valid_for: 30d
    renew_before: 10d
  delegate_to: localhost
  register: host_cert
"""

RETURN = r"""
certificate:
  description: The certificate to install (the new one, or the installed one when nothing changed or in check mode).
  returned: always
  type: str
reasons:
  description: Why the key is signed again; empty when the installed certificate stays.
  returned: always
  type: list
  elements: str
existing:
  description:
    - The installed certificate (C(type), C(key_id), C(serial), C(principals), C(valid_after),
      C(valid_before) in UTC or C(forever), C(signing_ca), C(extensions)); null when there is none
      or it cannot be read.
  returned: always
  type: dict
issued:
  description: The new certificate, in the same shape as RV(existing); null when none was signed.
  returned: always
  type: dict
ca_public_key:
  description: The CA's public key (what hosts list in C(TrustedUserCAKeys) or clients in C(@cert-authority) lines).
  returned: always
  type: str
"""

import time

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls, FleetAWSError
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import argument_spec, run_module
from ansible_collections.ec2fleet.fleet.plugins.module_utils.ssh_ca import (
    CertError,
    PrivateDir,
    ca_public_key,
    describe,
    duration,
    new_serial,
    parse_certificate,
    resign_reasons,
    sign,
    write_private,
)


def _ca_key_path(params, work):
    if params["ca_private_key"]:
        return params["ca_private_key"]
    name = params["ca_private_key_ssm_parameter"]
    found = AwsCalls(params).call("ssm", "get_parameter", f"read the CA key {name}", Name=name, WithDecryption=True)
    return write_private(work, "ca", found["Parameter"]["Value"])


def run(module):
    params = module.params
    now = time.time()
    try:
        valid_for, renew_before = duration(params["valid_for"]), duration(params["renew_before"])
        if renew_before >= valid_for:
            raise CertError(f"renew_before ({params['renew_before']}) must be shorter than valid_for "
                            f"({params['valid_for']}), or every run would sign again")
        principals = list(dict.fromkeys(p for p in params["principals"] if p))
        existing, unreadable = None, None
        if params["certificate"].strip():
            try:
                existing = parse_certificate(params["certificate"])
            except CertError as exc:
                unreadable = f"the installed certificate cannot be read ({exc})"
        with PrivateDir() as work:
            ca_key = _ca_key_path(params, work)
            ca_public = ca_public_key(ca_key)
            reasons = [unreadable] if unreadable else resign_reasons(
                existing, public_key=params["public_key"], ca_public_key=ca_public, cert_type=params["type"],
                principals=principals, renew_before=renew_before, now=now)
            result = dict(changed=bool(reasons), reasons=reasons, certificate=params["certificate"].strip(),
                          existing=describe(existing) if existing else None, issued=None, ca_public_key=ca_public)
            if reasons and not module.check_mode:
                certificate = sign(ca_key, params["public_key"], cert_type=params["type"], principals=principals,
                                   key_id=params["key_id"], serial=new_serial(now), valid_for=valid_for, now=now,
                                   options=params["options"])
                result.update(certificate=certificate, issued=describe(parse_certificate(certificate)))
    except CertError as exc:
        raise FleetAWSError(f"ssh_cert {params['key_id']}: {exc}") from exc
    return result


ARGUMENT_SPEC = argument_spec(
    public_key={"type": "str", "required": True},
    certificate={"type": "str", "default": ""},
    type={"type": "str", "choices": ["host", "user"], "default": "host"},
    principals={"type": "list", "elements": "str", "required": True},
    key_id={"type": "str", "required": True},
    valid_for={"type": "str", "default": "30d"},
    renew_before={"type": "str", "default": "7d"},
    options={"type": "list", "elements": "str", "default": []},
    # A path and a parameter name, not the key: nothing to hide from the logs.
    ca_private_key={"type": "path", "no_log": False},
    ca_private_key_ssm_parameter={"type": "str", "no_log": False},
)


def main():
    run_module(run, ARGUMENT_SPEC, required_one_of=[("ca_private_key", "ca_private_key_ssm_parameter")],
               mutually_exclusive=[("ca_private_key", "ca_private_key_ssm_parameter")])


if __name__ == "__main__":
    main()
