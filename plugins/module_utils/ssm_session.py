"""SSH carried over an AWS Systems Manager session: the ``ProxyCommand`` the ec2_fleet inventory
sets on hosts it reaches through SSM, and the small program that command runs when the account
is reached through an assumed role.

The ProxyCommand runs the AWS CLI (``aws ssm start-session --target <instance id>
--document-name AWS-StartSSHSession --parameters portNumber=<port>``; the CLI's
session-manager-plugin carries the bytes), so ssh keeps everything it gives Ansible
(ControlPersist, pipelining, Mitogen, become) and no bastion, inbound port or S3 bucket is needed.
The account's credentials and region go with it:

* an account given by ``profile``: ``--profile <name>``: the CLI resolves the profile itself,
  SSO and ``role_arn``/``source_profile`` profiles included, and caches what it assumed;
* an account given by ``assume_role_arn``: the AWS CLI has no option for a role, so this file is
  run as a program in front of it. It assumes the role through the collection's client layer
  (the same source credentials, profile and endpoint the inventory used) and execs the CLI with
  the temporary credentials in its environment. They never appear on a command line, in the
  hostvars or in the inventory cache.

Run as a program (what the ProxyCommand does)::

    python ssm_session.py --role-arn arn:aws:iam::123456789012:role/ops --region eu-west-1 \\
        -- aws ssm start-session --target i-0abc --document-name AWS-StartSSHSession ...

This file imports only the standard library and the client layer (boto3), so it runs by its
path, outside Ansible, from an installed collection as well as from a checkout.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

try:
    from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws as fleet_aws
except ImportError:  # run by its path (ssh's ProxyCommand): the client layer is the file beside it
    import aws as fleet_aws  # type: ignore[no-redef]

DOCUMENT = "AWS-StartSSHSession"
DEFAULT_PROGRAM = "aws"
# ssh expands %h (ansible_host: the instance id) and %p (the port) in a ProxyCommand.
TARGET, PORT = "%h", "%p"
# Characters that would break the double-quoted ProxyCommand in ansible_ssh_common_args.
UNSAFE = ('"', "\\", "\n")
# The credentials of a profile must not win over the assumed role's in the CLI's environment.
PROFILE_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def check_safe(what: str, value: str | None) -> None:
    """One clear line for a value the ProxyCommand cannot carry."""
    if value and any(char in value for char in UNSAFE):
        raise ValueError(f"{what} must not contain double quotes, backslashes or newlines, got {value!r}")


def start_session_command(region: str, profile: str | None = None, program: str = DEFAULT_PROGRAM) -> str:
    """The AWS CLI command line that opens the SSH session (``program`` is kept as written, so it
    may carry options of its own, or be a stand-in that takes the same arguments)."""
    parts = [program, "ssm", "start-session", "--target", TARGET, "--document-name", DOCUMENT,
             "--parameters", f"portNumber={PORT}", "--region", shlex.quote(region)]
    if profile:
        parts += ["--profile", shlex.quote(profile)]
    return " ".join(parts)


def proxy_command(region: str, profile: str | None = None, role_arn: str | None = None,
                  role_session_name: str | None = None, endpoint_url: str | None = None,
                  program: str = DEFAULT_PROGRAM) -> str:
    """The ProxyCommand for hosts of one (account, region). With ``role_arn`` it runs this file
    (with this Python) in front of the CLI, which gets the role's credentials; ``profile`` is then
    the role's source credentials. Without, the CLI gets ``--profile`` itself (when given)."""
    for what, value in (("ssm_proxy_command", program), ("profile", profile), ("assume_role_arn", role_arn),
                        ("role_session_name", role_session_name), ("endpoint_url", endpoint_url)):
        check_safe(what, value)
    if not role_arn:
        return start_session_command(region, profile, program)
    helper = [shlex.quote(sys.executable), shlex.quote(os.path.abspath(__file__)),
              "--role-arn", shlex.quote(role_arn), "--region", shlex.quote(region)]
    if role_session_name:
        helper += ["--role-session-name", shlex.quote(role_session_name)]
    if profile:
        helper += ["--profile", shlex.quote(profile)]
    if endpoint_url:
        helper += ["--endpoint-url", shlex.quote(endpoint_url)]
    return " ".join([*helper, "--", start_session_command(region, None, program)])


def ssh_common_args(command: str) -> str:
    """``ansible_ssh_common_args`` carrying the ProxyCommand (double-quoted: Ansible, Mitogen and
    the ops tools split it as one ssh option)."""
    return f'-o ProxyCommand="{command}"'


def role_environment(role_arn: str, region: str, profile: str | None = None,
                     role_session_name: str | None = None, endpoint_url: str | None = None) -> dict:
    """The environment with the assumed role's temporary credentials and the region in it.
    Raises ``FleetAWSError`` (one line) when the role cannot be assumed."""
    session, clients = fleet_aws.fleet_clients(
        region=region, profile=profile, assume_role_arn=role_arn,
        role_session_name=role_session_name or fleet_aws.DEFAULT_ROLE_SESSION_NAME, endpoint_url=endpoint_url)
    credentials = session.get_credentials().get_frozen_credentials()
    env = dict(os.environ)
    for name in PROFILE_VARIABLES:
        env.pop(name, None)
    env.update(AWS_ACCESS_KEY_ID=credentials.access_key, AWS_SECRET_ACCESS_KEY=credentials.secret_key,
               AWS_SESSION_TOKEN=credentials.token, AWS_REGION=clients.region, AWS_DEFAULT_REGION=clients.region)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ssm_session.py",
        description="Run a command (the AWS CLI's ssm start-session) with an assumed role's credentials.")
    parser.add_argument("--role-arn", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--role-session-name")
    parser.add_argument("--profile", help="source credentials for the role (default: the usual chain)")
    parser.add_argument("--endpoint-url")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="after --: the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is required after --")
    try:
        env = role_environment(args.role_arn, args.region, args.profile, args.role_session_name, args.endpoint_url)
    except fleet_aws.FleetAWSError as exc:
        # ssh prints a ProxyCommand's stderr: the operator sees this line, then ssh's own.
        sys.stderr.write(f"ec2fleet ssm_session: {exc}\n")
        return 255
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        sys.stderr.write(f"ec2fleet ssm_session: cannot run {command[0]}: {exc.strerror}\n")
        return 255
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    raise SystemExit(main())
