"""STAND-IN for the AWS CLI's `aws ssm start-session` (Session Manager) on the local fleet.

On AWS, the ec2_fleet inventory's `ssm` connection mode sets a ProxyCommand running
`aws ssm start-session --target <instance id> --document-name AWS-StartSSHSession
--parameters portNumber=<port> --region <region>`: the CLI's session-manager-plugin carries the
SSH bytes through the SSM agent on the instance to its own sshd, with no bastion and no inbound
port. The emulator (moto) has no Session Manager, and the containers run no SSM agent, so the
local fleet's inventory for that mode (inventory/local-ssm.ec2_fleet.yml) names this program
instead (the plugin's `ssm_proxy_command` option) and nothing else changes: the plugin builds
the same command line, ssh runs it with the same arguments.

What it stands in for, as the real service answers:
- the target must be an instance of the account and region asked (DescribeInstances on the
  emulator, with the credentials and endpoint of the caller's environment) and `running`,
  else "TargetNotConnected" and the AWS CLI's exit code for a service error (254);
- only the AWS-StartSSHSession document, and a port number, are accepted;
- the session reaches the instance's own address and port (its container's sshd), never the
  bastion: stdin and stdout are the SSH stream, until either side closes.

Production code never runs this: `ssm_proxy_command` defaults to `aws`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading

from ec2fleet.aws import client_layer

DOCUMENT = "AWS-StartSSHSession"
SERVICE_ERROR = 254  # the AWS CLI's exit code when the service answered with an error
USAGE_ERROR = 252  # ... and when the command line is wrong


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ec2fleet-local-ssm", description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=["ssm"])
    parser.add_argument("operation", choices=["start-session"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--document-name", required=True)
    parser.add_argument("--parameters", default="")
    parser.add_argument("--region")
    parser.add_argument("--profile")
    return parser.parse_args(argv)


def port_of(parameters: str) -> int:
    """portNumber=N (the CLI's shorthand syntax), as AWS-StartSSHSession takes it."""
    values = dict(part.split("=", 1) for part in parameters.split(",") if "=" in part)
    try:
        return int(values["portNumber"])
    except (KeyError, ValueError):
        raise ValueError(f"--parameters must give portNumber=<port>, got {parameters!r}") from None


def target_address(target: str, region: str | None, profile: str | None) -> str:
    """The private address of the running instance `target`; LookupError as the service says it."""
    _, clients = client_layer.fleet_clients(region=region or os.environ.get("AWS_REGION"), profile=profile,
                                            endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    try:
        found = clients("ec2").describe_instances(InstanceIds=[target])["Reservations"]
    except Exception as exc:  # an unknown id is an error on AWS too: the session cannot start
        raise LookupError(f"{target} is not connected ({exc})") from None
    instances = [i for r in found for i in r["Instances"]]
    if not instances or instances[0]["State"]["Name"] != "running" or not instances[0].get("PrivateIpAddress"):
        raise LookupError(f"{target} is not connected.")
    return instances[0]["PrivateIpAddress"]


def carry(sock: socket.socket, stdin, stdout) -> None:
    """The SSH stream: stdin to the instance, the instance to stdout, until either side closes."""

    def upstream() -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(stdin.fileno(), 65536):
                sock.sendall(chunk)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while chunk := sock.recv(65536):
        os.write(stdout.fileno(), chunk)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        if args.document_name != DOCUMENT:
            raise ValueError(f"only the {DOCUMENT} document is stood in for, got {args.document_name!r}")
        port = port_of(args.parameters)
    except ValueError as exc:
        print(f"ec2fleet-local-ssm: {exc}", file=sys.stderr)
        return USAGE_ERROR
    try:
        address = target_address(args.target, args.region, args.profile)
    except LookupError as exc:
        print(f"An error occurred (TargetNotConnected) when calling the StartSession operation: {exc}",
              file=sys.stderr)
        return SERVICE_ERROR
    try:
        sock = socket.create_connection((address, port), timeout=15)
    except OSError as exc:
        print(f"ec2fleet-local-ssm: {args.target}: cannot reach port {port}: {exc}", file=sys.stderr)
        return SERVICE_ERROR
    sock.settimeout(None)
    with sock:
        carry(sock, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
