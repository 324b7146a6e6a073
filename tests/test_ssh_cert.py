"""SSH certificates signed on the controller: module_utils/ssh_ca.py (read, decide, sign) and the
ec2fleet.fleet.ssh_cert module (CA key in a file, or an SSM SecureString in the emulator)."""

from __future__ import annotations

import subprocess
import time

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import ssh_ca
from deploy_support import client, run_module
from ssh_support import keygen

DAY = 86400


@pytest.fixture
def keys(tmp_path):
    made = {name: keygen(tmp_path / name) for name in ("ca", "ca2", "host", "other")}
    made["rsa"] = keygen(tmp_path / "rsa", "rsa")
    made["dir"] = tmp_path
    return made


def signed(keys, key="host", ca="ca", **kwargs):
    args = {"cert_type": "host", "principals": ["i-0abc", "10.0.1.5"], "key_id": "web-1", "serial": 7,
            "valid_for": 30 * DAY, "now": time.time(), **kwargs}
    return ssh_ca.sign(str(keys["dir"] / ca), keys[key], **args)


def test_a_signed_certificate_reads_back_exactly(keys):
    now = time.time()
    cert = ssh_ca.parse_certificate(signed(keys, now=now))
    assert cert["type"] == "host" and cert["key_id"] == "web-1" and cert["serial"] == 7
    assert cert["principals"] == ["i-0abc", "10.0.1.5"]
    assert ssh_ca.same_key(cert["public_key"], keys["host"])
    assert ssh_ca.same_key(cert["signing_ca"], keys["ca"])
    assert abs(cert["valid_after"] - (now - ssh_ca.BACKDATE)) <= 1
    assert abs(cert["valid_before"] - (now + 30 * DAY)) <= 1
    # ssh-keygen agrees on who signed what.
    listing = subprocess.run(["ssh-keygen", "-L", "-f", "-"], input=signed(keys), capture_output=True, text=True)
    assert "host certificate" in listing.stdout and "web-1" in listing.stdout


def test_rsa_keys_and_user_options(keys):
    cert = ssh_ca.parse_certificate(signed(keys, key="rsa", cert_type="user", principals=["alice"],
                                           options=["clear", "permit-pty"]))
    assert cert["key_type"] == "ssh-rsa" and cert["type"] == "user"
    assert cert["extensions"] == ["permit-pty"]
    assert ssh_ca.same_key(cert["public_key"], keys["rsa"])


def reasons(keys, cert_line, **kwargs):
    args = {"public_key": keys["host"], "ca_public_key": keys["ca"], "cert_type": "host",
            "principals": ["10.0.1.5", "i-0abc"], "renew_before": 7 * DAY, "now": time.time(), **kwargs}
    cert = ssh_ca.parse_certificate(cert_line) if cert_line else None
    return ssh_ca.resign_reasons(cert, **args)


def test_a_fitting_certificate_stays(keys):
    assert reasons(keys, signed(keys)) == []


@pytest.mark.parametrize("change,expected", [
    ({"public_key": "other"}, "certifies another key"),
    ({"ca_public_key": "ca2"}, "another CA signed it"),
    ({"principals": ["i-0abc"]}, "its principals"),
    ({"cert_type": "user"}, "not a user one"),
    ({"now_shift": 25 * DAY}, "within the renewal window"),
    ({"now_shift": 31 * DAY}, "expired"),
    ({"now_shift": -DAY}, "not valid before"),
])
def test_each_misfit_is_a_reason_to_sign_again(keys, change, expected):
    kwargs = {}
    for key, value in change.items():
        if key == "now_shift":
            kwargs["now"] = time.time() + value
        elif key in ("public_key", "ca_public_key"):
            kwargs[key] = keys[value]
        else:
            kwargs[key] = value
    found = reasons(keys, signed(keys), **kwargs)
    assert len(found) == 1 and expected in found[0], found


def test_no_certificate_is_a_reason(keys):
    assert reasons(keys, "") == ["no certificate yet"]


@pytest.mark.parametrize("value,seconds", [("30d", 30 * DAY), ("8h", 28800), ("90m", 5400), ("45", 45),
                                           (120, 120), ("2w", 14 * DAY)])
def test_durations(value, seconds):
    assert ssh_ca.duration(value) == seconds


@pytest.mark.parametrize("value", ["", "30x", "-1d", "0", "d"])
def test_bad_durations_say_what_is_expected(value):
    with pytest.raises(ssh_ca.CertError, match=r"duration|positive"):
        ssh_ca.duration(value)


def test_refusals_are_one_line(keys):
    with pytest.raises(ssh_ca.CertError, match="plain key, not a certificate"):
        ssh_ca.parse_certificate(keys["host"])
    with pytest.raises(ssh_ca.CertError, match="not an OpenSSH public key line"):
        ssh_ca.parse_certificate("garbage")
    with pytest.raises(ssh_ca.CertError, match="commas or spaces"):
        signed(keys, principals=["a,b"])
    keys["cert"] = signed(keys)
    with pytest.raises(ssh_ca.CertError, match="plain public key to sign, not a certificate"):
        signed(keys, key="cert")
    with pytest.raises(ssh_ca.CertError, match="cannot read the CA key"):
        ssh_ca.ca_public_key(str(keys["dir"] / "missing"))


# --- the module --------------------------------------------------------------------------------

def module_args(keys, **extra):
    return {"public_key": keys["host"], "principals": ["i-0abc", "10.0.1.5", "i-0abc"], "key_id": "web-1",
            "ca_private_key": str(keys["dir"] / "ca"), "valid_for": "30d", "renew_before": "7d", **extra}


def test_module_signs_then_keeps_then_renews_for_a_new_ca(keys):
    first = run_module("ec2fleet.fleet.ssh_cert", module_args(keys))
    assert first["changed"] is True and first["reasons"] == ["no certificate yet"]
    assert first["issued"]["principals"] == ["i-0abc", "10.0.1.5"]  # duplicates dropped
    assert ssh_ca.same_key(first["ca_public_key"], keys["ca"])
    again = run_module("ec2fleet.fleet.ssh_cert", module_args(keys, certificate=first["certificate"]))
    assert again["changed"] is False and again["certificate"] == first["certificate"]
    assert again["existing"]["serial"] == first["issued"]["serial"] and again["issued"] is None
    rotated = run_module("ec2fleet.fleet.ssh_cert", module_args(
        keys, certificate=first["certificate"], ca_private_key=str(keys["dir"] / "ca2")))
    assert rotated["changed"] is True and "another CA signed it (CA rotation)" in rotated["reasons"]
    assert ssh_ca.same_key(ssh_ca.parse_certificate(rotated["certificate"])["signing_ca"], keys["ca2"])


def test_module_check_mode_signs_nothing(keys):
    result = run_module("ec2fleet.fleet.ssh_cert", module_args(keys), check=True)
    assert result["changed"] is True and result["certificate"] == "" and result["issued"] is None


def test_module_rejects_a_renewal_window_as_long_as_the_validity(keys):
    result = run_module("ec2fleet.fleet.ssh_cert", module_args(keys, renew_before="30d"))
    assert result["failed"] is True
    assert "renew_before (30d) must be shorter than valid_for (30d)" in result["msg"]


def test_module_replaces_an_unreadable_certificate(keys):
    result = run_module("ec2fleet.fleet.ssh_cert", module_args(keys, certificate="ssh-ed25519-cert-v01@openssh.com AAAA"))
    assert result["changed"] is True and "cannot be read" in result["reasons"][0]


@pytest.mark.emulator
def test_module_reads_the_ca_from_an_ssm_securestring(aws, keys):
    ca_private = (keys["dir"] / "ca").read_text()
    client("ssm").put_parameter(Name="/fleet/ssh/host-ca", Value=ca_private, Type="SecureString")
    args = module_args(keys, ca_private_key_ssm_parameter="/fleet/ssh/host-ca")
    del args["ca_private_key"]
    result = run_module("ec2fleet.fleet.ssh_cert", args)
    assert result["changed"] is True
    assert ssh_ca.same_key(ssh_ca.parse_certificate(result["certificate"])["signing_ca"], keys["ca"])
    missing = run_module("ec2fleet.fleet.ssh_cert", {**args, "ca_private_key_ssm_parameter": "/fleet/ssh/nope"})
    assert missing["failed"] is True and "read the CA key /fleet/ssh/nope" in missing["msg"]
