"""The one boto3 client factory of the project: every piece of Python that talks to AWS uses it.

What it settles once, the same way for the inventory plugin, the custom modules and the
local-fleet tooling:

* credentials: the usual boto3 chain (environment, shared files, instance role), an optional
  named ``profile``, optional explicit keys, and an optional ``assume_role_arn`` on top;
* region: given, else the session's (``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / profile);
* endpoint: ``endpoint_url`` given, else ``AWS_ENDPOINT_URL`` (boto3 reads it itself; it is
  resolved here too so error messages can name it);
* retries: botocore ``standard`` (default) or ``adaptive`` mode with a max attempt count, so
  throttling backs off instead of failing;
* errors: :func:`format_aws_error` turns any boto3/botocore failure into one line saying what
  failed and where (no credentials, unreachable endpoint, access denied, anything else).

How to import it: ``from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import ...``,
the same path for modules (Ansible ships this file in the module payload), the inventory plugin,
the local-fleet tooling and the tests (tools/bootstrap links the checkout as the collection and
puts that collections path on the venv's ``sys.path``).

Modules call AWS through :class:`AwsCalls` (clients from the module's AWS options, every failure
one :class:`FleetAWSError` line); the options and their defaults are :data:`AWS_ARGUMENT_SPEC`,
documented once in the ``ec2fleet.fleet.aws`` doc fragment, which the inventory plugin uses too.

Typical use::

    session, clients = fleet_clients(region="eu-west-1", profile="prod",
                                     assume_role_arn="arn:aws:iam::123456789012:role/ops")
    ec2 = clients("ec2")                    # default region
    asg = clients("autoscaling", "us-east-1")
    try:
        ...
    except FLEET_AWS_ERRORS as exc:
        raise SystemExit(format_aws_error(exc, action="describe instances", region="us-east-1"))

This file imports only the standard library, boto3 and botocore, so it also works inside a
module payload on a managed host.
"""

from __future__ import annotations

import os
import threading

try:
    import boto3
    import botocore.config
    import botocore.exceptions

    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
    FLEET_AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
except ImportError as _exc:  # pragma: no cover - the toolchain pins boto3
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = _exc
    FLEET_AWS_ERRORS = ()

RETRY_MODES = ("standard", "adaptive", "legacy")
DEFAULT_RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_ROLE_SESSION_NAME = "ec2fleet"

# The AWS options every module takes (documented once in plugins/doc_fragments/aws.py).
AWS_ARGUMENT_SPEC = {
    "region": {"type": "str", "aliases": ["aws_region"]},
    "profile": {"type": "str", "aliases": ["aws_profile"]},
    "endpoint_url": {"type": "str", "aliases": ["aws_endpoint_url"]},
    "assume_role_arn": {"type": "str"},
    "retry_mode": {"type": "str", "default": DEFAULT_RETRY_MODE, "choices": list(RETRY_MODES)},
    "max_attempts": {"type": "int", "default": DEFAULT_MAX_ATTEMPTS},
}

# Error codes that mean "these credentials may not do this": never retried, reported as such.
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedAccess",
        "AuthorizationError",
        "NotAuthorized",
    }
)
# Error codes that mean "the credentials themselves are bad or expired".
BAD_CREDENTIALS_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidAccessKeyId",
    }
)


class FleetAWSError(Exception):
    """A failure already formatted as one clear line (see :func:`format_aws_error`)."""


def endpoint_from_env(endpoint_url: str | None = None) -> str | None:
    """The endpoint every client uses: the explicit one, else ``AWS_ENDPOINT_URL``, else AWS."""
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


def client_config(retry_mode: str = DEFAULT_RETRY_MODE, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                  max_pool_connections: int = 10, connect_timeout: float = 10, read_timeout: float = 60):
    """botocore Config with the project's retry policy."""
    if retry_mode not in RETRY_MODES:
        raise FleetAWSError(f"retry_mode must be one of {', '.join(RETRY_MODES)}, got {retry_mode!r}")
    return botocore.config.Config(
        # total_max_attempts counts the first attempt too: max_attempts=1 means no retry.
        retries={"mode": retry_mode, "total_max_attempts": int(max_attempts)},
        max_pool_connections=max_pool_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


class ClientFactory:
    """Builds (and reuses) boto3 clients from one session with one config and endpoint.

    Calling the factory ``clients(service, region=None)`` returns a client; clients are cached
    per (service, region) and boto3 clients are thread-safe, so one factory serves a thread pool.
    """

    def __init__(self, session, config, endpoint_url: str | None = None, region: str | None = None):
        self.session = session
        self.config = config
        self.endpoint_url = endpoint_from_env(endpoint_url)
        # botocore reads AWS_DEFAULT_REGION and profiles, not AWS_REGION (which the AWS CLI v2 and
        # the other SDKs read): take it too, as the documented default says.
        self.region = region or session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
        self._clients: dict = {}
        self._lock = threading.Lock()

    def __call__(self, service: str, region: str | None = None):
        region = region or self.region
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # Session.client() is not thread-safe; creation stays under the lock.
                client = self.session.client(
                    service, region_name=region, endpoint_url=self.endpoint_url, config=self.config
                )
                self._clients[key] = client
            return client

    def where(self, region: str | None = None) -> str:
        """Human-readable "where" for error messages: region and endpoint."""
        region = region or self.region
        return f"region {region}, endpoint {self.endpoint_url}" if self.endpoint_url else f"region {region}"


def build_session(profile: str | None = None, region: str | None = None,
                  access_key: str | None = None, secret_key: str | None = None, session_token: str | None = None):
    """A boto3 Session from the usual credentials chain, optionally a named profile or keys."""
    if not HAS_BOTO3:
        raise FleetAWSError(f"boto3 and botocore are required: {BOTO3_IMPORT_ERROR}")
    kwargs = {}
    if profile:
        kwargs["profile_name"] = profile
    if region:
        kwargs["region_name"] = region
    if access_key and secret_key:
        kwargs.update(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
        if session_token:
            kwargs["aws_session_token"] = session_token
    try:
        return boto3.Session(**kwargs)
    except botocore.exceptions.ProfileNotFound as exc:
        raise FleetAWSError(f"AWS profile {profile!r} not found in the shared config/credentials files") from exc


def fleet_clients(region: str | None = None, profile: str | None = None, assume_role_arn: str | None = None,
                  role_session_name: str = DEFAULT_ROLE_SESSION_NAME, endpoint_url: str | None = None,
                  retry_mode: str = DEFAULT_RETRY_MODE, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                  access_key: str | None = None, secret_key: str | None = None, session_token: str | None = None,
                  max_pool_connections: int = 10):
    """Return ``(session, clients)``: the boto3 Session in use and a :class:`ClientFactory`.

    With ``assume_role_arn`` the role is assumed once (STS through the same endpoint and retry
    policy) and the returned session carries the temporary credentials.
    Raises :class:`FleetAWSError` with one clear line when the role cannot be assumed.
    """
    session = build_session(profile, region, access_key, secret_key, session_token)
    config = client_config(retry_mode, max_attempts, max_pool_connections)
    clients = ClientFactory(session, config, endpoint_url, region)
    if assume_role_arn:
        try:
            creds = clients("sts").assume_role(RoleArn=assume_role_arn, RoleSessionName=role_session_name)["Credentials"]
        except FLEET_AWS_ERRORS as exc:
            raise FleetAWSError(
                format_aws_error(exc, action=f"assume role {assume_role_arn}", where=clients.where())
            ) from exc
        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=clients.region,
        )
        clients = ClientFactory(session, config, endpoint_url, clients.region)
    return session, clients


def error_code(exc) -> str | None:
    """The AWS error code of a ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def error_kind(exc) -> str:
    """Classify a failure: no_credentials, unreachable, access_denied, bad_credentials,
    region_disabled, throttled or other."""
    if not HAS_BOTO3:
        return "other"
    exc_mod = botocore.exceptions
    if isinstance(exc, (exc_mod.NoCredentialsError, exc_mod.PartialCredentialsError)):
        return "no_credentials"
    if isinstance(exc, (exc_mod.EndpointConnectionError, exc_mod.ConnectTimeoutError, exc_mod.ConnectionClosedError,
                        exc_mod.ReadTimeoutError, exc_mod.ProxyConnectionError, exc_mod.SSLError)):
        return "unreachable"
    code = error_code(exc)
    if code == "OptInRequired":
        return "region_disabled"
    if code in ACCESS_DENIED_CODES:
        return "access_denied"
    if code in BAD_CREDENTIALS_CODES:
        return "bad_credentials"
    if code in ("Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"):
        return "throttled"
    return "other"


def format_aws_error(exc, action: str = "call AWS", where: str | None = None) -> str:
    """One line for an operator: what failed, where, and why, without a traceback."""
    kind = error_kind(exc)
    place = f" ({where})" if where else ""
    if kind == "no_credentials":
        return (f"cannot {action}{place}: no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                f"AWS_SECRET_ACCESS_KEY, the inventory's profile option, or run with an instance role)")
    if kind == "unreachable":
        url = getattr(exc, "kwargs", {}).get("endpoint_url") or ""
        target = f" {url}" if url else ""
        return f"cannot {action}{place}: AWS endpoint{target} unreachable ({type(exc).__name__})"
    code = error_code(exc)
    message = ""
    if code:
        message = exc.response.get("Error", {}).get("Message") or ""
    detail = f"{code}: {message}".rstrip(": ") if code else str(exc)
    detail = " ".join(detail.split())  # one line, whatever the service sent
    if kind == "access_denied":
        return f"cannot {action}{place}: access denied ({detail})"
    if kind == "bad_credentials":
        return f"cannot {action}{place}: AWS rejected the credentials ({detail})"
    if kind == "region_disabled":
        return f"cannot {action}{place}: region not enabled for this account ({detail})"
    return f"cannot {action}{place}: {detail}"


class AwsCalls:
    """The one AWS call wrapper of the modules: clients built from the module's AWS options
    (:data:`AWS_ARGUMENT_SPEC`), and every failure turned into a :class:`FleetAWSError` that
    says what was tried and where.

    ``api_calls`` counts the API operations made through it ({operation name: count}, e.g.
    ``{"DescribeTargetHealth": 6}``): one botocore ``before-call`` handler per client, so calls
    made on ``client(service)`` directly are counted too, each once however often it is retried.
    """

    def __init__(self, params):
        _session, self._clients = fleet_clients(
            region=params.get("region"),
            profile=params.get("profile"),
            endpoint_url=params.get("endpoint_url"),
            assume_role_arn=params.get("assume_role_arn"),
            retry_mode=params.get("retry_mode") or DEFAULT_RETRY_MODE,
            max_attempts=params.get("max_attempts") or DEFAULT_MAX_ATTEMPTS,
        )
        self.where = self._clients.where()
        self.region = self._clients.region
        self.api_calls = {}
        self._counted = set()
        self._count_lock = threading.Lock()

    def client(self, service):
        client = self._clients(service)
        if id(client) not in self._counted:
            with self._count_lock:
                if id(client) not in self._counted:
                    client.meta.events.register("before-call", self._count)
                    self._counted.add(id(client))
        return client

    def sorted_api_calls(self):
        """``api_calls`` in operation name order: what a module returns as its ``api_calls``."""
        return dict(sorted(self.api_calls.items()))

    def _count(self, model=None, **_kwargs):
        if model is not None:
            with self._count_lock:
                self.api_calls[model.name] = self.api_calls.get(model.name, 0) + 1

    def call(self, service, operation, action, **kwargs):
        """One API operation; ``action`` says what it was for in the error line."""
        try:
            return getattr(self.client(service), operation)(**kwargs)
        except FLEET_AWS_ERRORS as exc:
            raise FleetAWSError(format_aws_error(exc, action=action, where=self.where)) from exc

    def find(self, service, operation, action, missing_codes, **kwargs):
        """Like :meth:`call`, but None when AWS answers with one of ``missing_codes`` (not found)."""
        try:
            return getattr(self.client(service), operation)(**kwargs)
        except FLEET_AWS_ERRORS as exc:
            if error_code(exc) in missing_codes:
                return None
            raise FleetAWSError(format_aws_error(exc, action=action, where=self.where)) from exc

    def paginate(self, service, operation, key, action, **kwargs):
        """Every item under ``key`` across the operation's pages."""
        try:
            items = []
            for page in self.client(service).get_paginator(operation).paginate(**kwargs):
                items.extend(page.get(key, []))
            return items
        except FLEET_AWS_ERRORS as exc:
            raise FleetAWSError(format_aws_error(exc, action=action, where=self.where)) from exc
