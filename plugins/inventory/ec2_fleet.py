# Copyright: the ec2-fleet project
# Apache License 2.0
"""ec2_fleet: dynamic EC2 inventory, a faster and safer drop-in for amazon.aws.aws_ec2."""

from __future__ import annotations

DOCUMENTATION = r"""
name: ec2_fleet
short_description: EC2 inventory across accounts and regions, ASG-aware groups, bastion or SSM wiring and a config-keyed cache
description:
  - Discovers EC2 instances across regions and accounts (every (account, region) pair queried
    concurrently, bounded pool) and builds hosts, groups and hostvars from them, ready for
    playbooks. A drop-in for C(amazon.aws.aws_ec2) - O(regions), O(filters), O(include_filters),
    O(exclude_filters), O(hostnames), O(keyed_groups), O(groups), O(compose), O(strict), caching,
    O(profile), O(assume_role_arn) and O(endpoint_url) mean the same.
  - "Adds: several accounts in one inventory (O(accounts)); regions that are not enabled for the
    account are skipped with a warning; Auto Scaling awareness (groups C(asg_<name>), lifecycle
    state, health, scale-in protection and launch template version as hostvars); optional
    target-group membership; default groups by role tag, environment tag, account, region and
    availability zone; SSH wired through the bastion of each
    VPC or carried over an SSM session (O(connection_mode)); optional SSM agent hostvars
    (O(ssm_hostvars)); duplicate hostnames never collapse into one host; a cache of the processed
    inventory keyed by the inventory file's content, the credentials profile, every account's
    identity and the endpoint, so a changed file never serves an old answer and a hit makes no
    AWS call."
  - Hostvars are a curated set by default (see O(full_description) for every instance field).
    Hostvars always set (null when AWS has no value) -
    C(ec2_instance_id), C(ec2_account_id) (the instance's owner account), C(ec2_account_alias)
    (the account's O(accounts) alias, else null), C(ec2_region), C(ec2_availability_zone),
    C(ec2_vpc_id), C(ec2_subnet_id), C(ec2_private_ip_address), C(ec2_public_ip_address), C(ec2_private_dns_name),
    C(ec2_public_dns_name), C(ec2_instance_type), C(ec2_image_id), C(ec2_launch_time) (ISO 8601
    string), C(ec2_state) (for example V(running)), C(ec2_key_name), C(ec2_security_group_ids) (list),
    C(ec2_tags) (dict), C(asg_name), C(asg_lifecycle_state) (V(InService), V(Pending), V(Standby),
    V(Terminating)...), C(asg_health_status) (V(Healthy) or V(Unhealthy)), C(asg_protected_from_scale_in)
    (bool), C(asg_launch_template_version) (the five C(asg_*) are null outside an Auto Scaling Group
    or when O(asg=false)), C(ec2_is_bastion) (bool), C(ec2_connection_mode) (how the host is
    reached - V(bastion), V(ssm) or V(direct), see O(connection_mode)), C(ansible_host).
  - C(target_group_arns) (list of target group ARNs the instance is registered in) only with
    O(target_groups=true). C(ssm_ping_status) (V(Online), V(ConnectionLost), V(Inactive)),
    C(ssm_agent_version), C(ssm_platform_type) (V(Linux), V(Windows), V(MacOS)),
    C(ssm_platform_name) and C(ssm_platform_version) only with O(ssm_hostvars=true) (null for an
    instance SSM does not manage). C(ansible_ssh_common_args) only on hosts reached through a
    bastion or SSM.
  - "Connection wiring (O(connection_mode), per host O(connection_mode_tag)). V(bastion) - hosts
    tagged O(bastion_tag_key)=O(bastion_tag_value) form the group C(bastion) and connect by their
    public address; other hosts connect by their public address when they have one (see
    O(ssh_via_bastion)), else by private address through a bastion of their own VPC and account
    (lowest instance id first) with C(ansible_ssh_common_args=-o ProxyCommand=\"ssh -W %h:%p
    -o StrictHostKeyChecking=yes [-p port] [user@]bastion\") - an explicit hop carrying
    O(bastion_ssh_args), because ssh applies command-line options only to the destination, never
    to a ProxyJump hop. V(ssm) - SSH carried over an SSM Session Manager
    session, no bastion and no inbound port - C(ansible_host) is the instance id and
    C(ansible_ssh_common_args) a C(ProxyCommand) running the AWS CLI's C(aws ssm start-session
    --target %h --document-name AWS-StartSSHSession --parameters portNumber=%p) with the host's
    region and its account's credentials (C(--profile) for an account given by profile; for an
    assumed role, the collection's C(plugins/module_utils/ssm_session.py) assumes it and runs the
    CLI with the temporary credentials in its environment). The controller needs the AWS CLI and
    its session-manager-plugin, the instance a running SSM agent; see the collection's
    C(docs/ssm.md) for the IAM permissions. V(direct) - public address, else private, no proxy.
    V(auto) - V(bastion) where the host's VPC has a bastion with a public address, else V(ssm).
    O(compose) runs after this wiring, so an inventory file can override C(ansible_host) or
    C(ansible_ssh_common_args)."
  - "Default groups (see O(default_groups)): C(bastion), C(asg_<name>), C(role_<Role tag>),
    C(env_<Env tag>), C(account_<alias>) (with O(accounts) only; the account id when it has no
    alias), C(region_<region>), C(az_<zone>); names are lower-cased and every character
    other than a-z, 0-9 and _ becomes _, so C(web-prod) becomes C(asg_web_prod) and C(us-east-1a)
    becomes C(az_us_east_1a)."
  - Errors are fatal (ansible-inventory and ansible-playbook exit non-zero) and one line long -
    unknown or invalid options name the option and the allowed values; missing credentials,
    an unreachable endpoint or denied access say what failed and where.
  - "Python imports: the plugin imports the collection's client layer (C(plugins/module_utils/aws.py),
    the one boto3 client factory the modules use too) only when AWS must
    be called, so a cache hit does not even import boto3."
author:
  - ec2-fleet project (!UNKNOWN)
requirements:
  - boto3
  - botocore
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - ec2fleet.fleet.aws.retries
options:
  plugin:
    description: Token that marks the file as this plugin's; the file name must end in C(.ec2_fleet.yml) or C(.ec2_fleet.yaml).
    required: true
    type: str
    choices: [ec2fleet.fleet.ec2_fleet]
  regions:
    description:
      - Regions to query. Empty means every region enabled for the account (C(DescribeRegions)).
      - A listed region that is not enabled for the account is skipped with a warning.
      - With O(accounts), the regions of an account that lists none.
    type: list
    elements: str
    default: []
  accounts:
    description:
      - Several AWS accounts in one inventory. Each entry is a dict with C(assume_role_arn) (the
        role to assume in that account) or C(profile) (a named profile of that account; with
        C(assume_role_arn) too, the source credentials of the role), and optionally C(alias)
        (names the group C(account_<alias>) and the hostvar C(ec2_account_alias)), C(regions)
        (default O(regions)), C(filters) (merged over O(filters), the account's value winning for
        the same filter name) and C(role_session_name) (default O(role_session_name)).
      - Accounts without their own C(profile) assume their role with the credentials of O(profile),
        else the usual boto3 chain. O(include_filters), O(exclude_filters) and every other option
        apply to all accounts.
      - Every (account, region) pair is queried concurrently, at most O(max_concurrency) at once.
        An account that fails (role not assumable, access denied, endpoint unreachable) is one
        line naming it; O(strict_accounts) decides whether that fails the inventory.
      - Hostnames that collide across accounts stay distinct hosts (see O(strict_hostnames)).
      - Empty (default) - one account, the credentials of O(profile) and O(assume_role_arn).
        O(assume_role_arn) cannot be combined with O(accounts) (a role to assume before the
        accounts' roles goes into the profile, C(role_arn) and C(source_profile)).
    type: list
    elements: dict
    default: []
  strict_accounts:
    description:
      - With V(true) (default), an account of O(accounts) that fails fails the inventory, with one
        line naming the account and the cause. With V(false), it is left out with a warning (none of
        its hosts, even from regions that answered) and the other accounts are inventoried.
    type: bool
    default: true
  filters:
    description:
      - EC2 C(DescribeInstances) filters, ANDed, as a dict of filter name to value or list of
        values (see U(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html)).
      - As in aws_ec2, it is combined with O(include_filters) as one more include entry.
    type: dict
    default: {}
  include_filters:
    description: A list of filter dicts; an instance matching any of them is included (OR).
    type: list
    elements: dict
    default: []
  exclude_filters:
    description: A list of filter dicts; an instance matching any of them is excluded, whatever the include filters say.
    type: list
    elements: dict
    default: []
  states:
    description:
      - Instance states to include (the C(instance-state-name) filter), unless a filter already names
        C(instance-state-name).
    type: list
    elements: str
    choices: [pending, running, shutting-down, terminated, stopping, stopped]
    default: [running]
  hostnames:
    description:
      - Inventory hostname sources in order of preference; the first one with a value wins.
      - "A string: C(tag:Name) (a tag's value), C(tag:Name,Other) (the first of these tags set),
        C(tag:Role=web) (V(Role_web) when the tag has that value), C(instance-id), C(private-ip-address),
        C(ip-address) or C(public-ip-address), C(dns-name), C(private-dns-name), C(image-id),
        C(instance-type), C(key-name), C(subnet-id), C(vpc-id), C(placement.availability-zone)."
      - "A dict: C(name) (as above), optional C(prefix) (as above) and C(separator) (default V(_)),
        giving prefix + separator + name."
      - An instance for which no preference has a value is named by its instance id (never dropped).
    type: list
    elements: raw
    default: ['tag:Name', 'private-ip-address', 'instance-id']
  strict_hostnames:
    description:
      - Two instances resolving to the same hostname never become one host. With V(false) the later
        one (by instance id) is named C(<hostname>-<instance id>) and a warning says so; with V(true)
        the inventory fails instead.
    type: bool
    default: false
  profile:
    description: Named AWS profile for credentials; default is the usual boto3 chain (environment, shared files, instance role).
    type: str
    aliases: [aws_profile, boto_profile]
    env:
      - name: AWS_PROFILE
      - name: AWS_DEFAULT_PROFILE
  assume_role_arn:
    description: Role to assume (STS) with the credentials found, before any other call. Not with O(accounts).
    type: str
  role_session_name:
    description: Session name used with O(assume_role_arn).
    type: str
    default: ec2fleet-inventory
  endpoint_url:
    description:
      - Endpoint for every AWS service the plugin calls (an emulator, a VPC endpoint).
        Defaults to C(AWS_ENDPOINT_URL) when set, else the AWS endpoints.
    type: str
    aliases: [aws_endpoint_url]
    env:
      - name: AWS_ENDPOINT_URL
  max_concurrency:
    description: (Account, region) pairs queried at the same time (bounded thread pool), at least 1.
    type: int
    default: 4
  strict_permissions:
    description:
      - With V(true) (default) access denied on any call fails the inventory. With V(false), an Auto
        Scaling or ELB call that is denied only drops those hostvars/groups, with a warning.
    type: bool
    default: true
  asg:
    description: Query Auto Scaling for groups C(asg_<name>) and the C(asg_*) hostvars.
    type: bool
    default: true
  target_groups:
    description:
      - Query ELBv2 for target-group membership and set hostvar C(target_group_arns) (one
        C(DescribeTargetHealth) call per target group per region).
    type: bool
    default: false
  ssm_hostvars:
    description:
      - Query Systems Manager for the instances' SSM agent and set the C(ssm_*) hostvars (ping
        status, agent version, platform) - one paginated C(DescribeInstanceInformation) sweep per
        account and region, never a call per host. Needs C(ssm:DescribeInstanceInformation); with
        O(strict_permissions=false) a denied call only drops these hostvars, with a warning.
    type: bool
    default: false
  full_description:
    description:
      - Add every field of the instance's C(DescribeInstances) description to the hostvars, named as
        aws_ec2 names them (snake_case, C(tags) as a dict, C(placement.region)), for aws_ec2 parity.
        This makes the inventory much larger and slower; the curated hostvars stay.
    type: bool
    default: false
  default_groups:
    description: Which default groups to build.
    type: list
    elements: str
    choices: [bastion, asg, role, env, account, region, az]
    default: [bastion, asg, role, env, account, region, az]
  role_tag:
    description: Tag whose value names the C(role_<value>) group.
    type: str
    default: Role
  env_tag:
    description: Tag whose value names the C(env_<value>) group.
    type: str
    default: Env
  bastion_tag_key:
    description: Tag key marking bastion instances.
    type: str
    default: Role
  bastion_tag_value:
    description: Value of O(bastion_tag_key) marking bastion instances.
    type: str
    default: bastion
  bastion_user:
    description: SSH user on the bastion in the hop's destination; empty means the ssh default.
    type: str
  bastion_port:
    description: SSH port of the bastion in the hop's destination (C(-p), left out for 22).
    type: int
    default: 22
  bastion_ssh_args:
    description:
      - OpenSSH options of the hop to the bastion, as on an ssh command line, for example
        C(-o StrictHostKeyChecking=yes -o UserKnownHostsFile=~/.ssh/fleet_known_hosts -i ~/.ssh/fleet).
        A host behind a bastion gets C(ansible_ssh_common_args=-o ProxyCommand="ssh -W %h:%p
        <bastion_ssh_args> [-p port] [user@]bastion").
      - Options given on the command line (C(ssh_args) in C(ansible.cfg), C(ansible_ssh_common_args))
        apply to the destination only, never to a ProxyJump hop (ssh(1)); only this option makes
        the hop check the bastion's host key as strictly as the host's.
      - The C(ProxyCommand) runs through the shell, so words are shell-quoted; ssh expands its
        C(%) tokens (C(%%) for a literal C(%)).
      - Empty - C(-o ProxyJump=[user@]bastion[:port]); the hop then follows C(~/.ssh/config)
        (OpenSSH's default is C(StrictHostKeyChecking=ask)).
      - Must not contain double quotes, backslashes or newlines.
      - From the environment when the inventory file does not set it (a key or known_hosts path
        that differs per controller, such as a CI runner's).
    type: str
    default: -o StrictHostKeyChecking=yes
    env:
      - name: EC2FLEET_BASTION_SSH_ARGS
  ssh_via_bastion:
    description:
      - V(when_private) - hosts without a public address go through their VPC's bastion, others connect directly.
      - V(always) - every non-bastion host connects by private address through its VPC's bastion.
      - V(never) - no bastion hop; C(ansible_host) is the public address, else the private one.
    type: str
    choices: [when_private, always, never]
    default: when_private
  connection_mode:
    description:
      - How Ansible reaches the hosts (see the connection wiring above).
      - V(bastion) - through the bastion of the host's VPC (see O(bastion_ssh_args)), following O(ssh_via_bastion).
      - V(ssm) - SSH carried over an SSM session; the host is addressed by its instance id.
      - V(direct) - public address, else private, no proxy.
      - V(auto) - V(bastion) where the host's VPC has a bastion with a public address, else V(ssm).
    type: str
    choices: [bastion, ssm, direct, auto]
    default: bastion
  connection_mode_tag:
    description:
      - Tag whose value (V(bastion), V(ssm), V(direct) or V(auto)) overrides O(connection_mode)
        for that instance; another value is ignored with a warning. Empty turns the override off.
    type: str
    default: "ec2fleet:connection"
  ssm_proxy_command:
    description:
      - The program the SSM C(ProxyCommand) runs with the AWS CLI's C(ssm start-session)
        arguments, as written (it may carry options of its own, for example
        C(aws --endpoint-url https://ssm.eu-west-1.amazonaws.com)). Another program taking the same
        arguments can stand in for it where no Session Manager exists (a local fleet).
      - Must not contain double quotes or backslashes.
    type: str
    default: aws
"""

EXAMPLES = r"""
# inventory/production.ec2_fleet.yml: everything at its defaults, two regions.
plugin: ec2fleet.fleet.ec2_fleet
regions: [eu-west-1, us-east-1]

---
# Drop-in for an aws_ec2 file: same keys, same meaning.
plugin: ec2fleet.fleet.ec2_fleet
regions: [eu-west-1]
filters:
  tag:Env: prod
exclude_filters:
  - tag:Maintenance: "true"
hostnames:
  - tag:Name
  - name: instance-id
    prefix: tag:Role
    separator: "-"
keyed_groups:
  - key: ec2_tags.Team
    prefix: team
  - key: ec2_instance_type
    prefix: type
groups:
  big: ec2_instance_type.startswith('m5.')
compose:
  ansible_user: "'admin'"

---
# Bastion wiring with a custom tag and user, plus target groups and a persistent cache.
# The hop to the bastion checks its host key against the fleet's own known_hosts, with its key.
plugin: ec2fleet.fleet.ec2_fleet
regions: [eu-west-1]
bastion_tag_key: Bastion
bastion_tag_value: "yes"
bastion_user: jump
bastion_port: 2222
bastion_ssh_args: -o StrictHostKeyChecking=yes -o UserKnownHostsFile=~/.ssh/fleet_known_hosts -i ~/.ssh/fleet
target_groups: true
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: .cache/inventory
cache_timeout: 300

---
# Assume a role in another account, adaptive retries, stopped instances too.
plugin: ec2fleet.fleet.ec2_fleet
regions: []
profile: ops
assume_role_arn: arn:aws:iam::123456789012:role/fleet-read
retry_mode: adaptive
states: [running, stopped]

---
# Three accounts in one inventory, each through its own role, reached over SSM where no
# bastion is (connection_mode auto); a host tagged ec2fleet:connection=direct connects directly.
plugin: ec2fleet.fleet.ec2_fleet
regions: [eu-west-1]
filters:
  tag:Env: prod
accounts:
  - alias: payments
    assume_role_arn: arn:aws:iam::111111111111:role/fleet-read
    regions: [eu-west-1, us-east-1]
  - alias: search
    assume_role_arn: arn:aws:iam::222222222222:role/fleet-read
    filters:
      tag:Team: search
  - alias: shared
    profile: shared-services   # an SSO or role profile in ~/.aws/config; the AWS CLI gets it too
strict_accounts: false
connection_mode: auto
ssm_hostvars: true

---
# Local fleet: moto holds the instances, containers stand in for them; compose overrides
# the wiring so Ansible reaches each container on its published loopback port.
plugin: ec2fleet.fleet.ec2_fleet
endpoint_url: http://127.0.0.1:5000
regions: [us-east-1]
ssh_via_bastion: never
compose:
  ansible_host: "'127.0.0.1'"
  ansible_port: ec2_tags.LocalSshPort | int
"""

import hashlib
import inspect
import json
import re
import shlex
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import NamedTuple

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display
from ansible.utils.vars import validate_variable_name

display = Display()


# Bump when the cached structure or wiring changes, so an old cache entry is never misread or
# served (4: the bastion hop became a ProxyCommand).
CACHE_FORMAT = 4

SSM_HOSTVARS = ("ssm_ping_status", "ssm_agent_version", "ssm_platform_type", "ssm_platform_name", "ssm_platform_version")
ACCOUNT_KEYS = ("assume_role_arn", "profile", "alias", "regions", "filters", "role_session_name")
CONNECTION_MODES = ("bastion", "ssm", "direct", "auto")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")

# hostnames preference -> path in the DescribeInstances description
HOSTNAME_SOURCES = {
    "instance-id": ("InstanceId",),
    "private-ip-address": ("PrivateIpAddress",),
    "ip-address": ("PublicIpAddress",),
    "public-ip-address": ("PublicIpAddress",),
    "dns-name": ("PublicDnsName",),
    "private-dns-name": ("PrivateDnsName",),
    "image-id": ("ImageId",),
    "instance-type": ("InstanceType",),
    "key-name": ("KeyName",),
    "subnet-id": ("SubnetId",),
    "vpc-id": ("VpcId",),
    "placement.availability-zone": ("Placement", "AvailabilityZone"),
}
HOSTNAME_CHOICES = "tag:<Key>, tag:<Key1>,<Key2>, tag:<Key>=<Value>, " + ", ".join(HOSTNAME_SOURCES)

_GROUP_UNSAFE = re.compile(r"[^a-z0-9_]")
# An expression that is nothing but a variable path (a.b.c or a['b']): resolved without Jinja.
_SIMPLE_PATH = re.compile(r"^\s*([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*|\[(?:'[^'\\]*'|\"[^\"\\]*\")\])*)\s*$")
_PATH_PART = re.compile(r"\.([A-Za-z_]\w*)|\['([^'\\]*)'\]|\[\"([^\"\\]*)\"\]")
_DICT_ATTRS = frozenset(dir(dict))
_JINJA_CONSTANTS = frozenset(("true", "false", "none", "True", "False", "None"))
_NOT_PLAIN = object()


# -- the two ansible-core internals this plugin relies on for speed ----------------------------
# Everything else goes through public interfaces (set_options via _read_config_data, add_group,
# add_host, add_child, set_variable, Constructable's helpers). Each of these two sits behind one
# function here, checks at run time that core still looks the way it was verified on, and falls
# back to the public path when it does not; tests/test_inventory_core_contract.py fails loudly
# when an ansible-core upgrade changes what they depend on.


def _host_vars_are_a_dict(host):
    return isinstance(getattr(host, "vars", None), dict)


def _valid_var_name(name):
    try:
        validate_variable_name(name)
    except AnsibleError:
        return False
    return True


def set_host_vars(inventory, name, hostvars):
    """Set many variables of one host at once. Host.set_variable does, per variable, a name
    check and a merge when both old and new values are mappings; for a host just added (it holds
    only inventory_file/inventory_dir) with valid names, that is a plain dict update, about 3x
    cheaper over 3,000 hosts x 25 vars. Anything else takes the public path."""
    host = inventory.hosts[name]
    if _host_vars_are_a_dict(host) and not (hostvars.keys() & host.vars.keys()) and all(map(_valid_var_name, hostvars)):
        host.vars.update(hostvars)
        return
    for key, value in hostvars.items():
        inventory.set_variable(name, key, value)


def plain_path_value(template, variables):
    """The value of a bare variable path (ec2_tags.Role, placement['region']) looked up directly,
    or _NOT_PLAIN when the expression needs Jinja (or the path does not resolve plainly)."""
    match = _SIMPLE_PATH.match(template) if isinstance(template, str) else None
    if not match or match.group(1) not in variables or match.group(1) in _JINJA_CONSTANTS:
        return _NOT_PLAIN
    value = variables[match.group(1)]
    for part in _PATH_PART.finditer(match.group(2)):
        attr, key1, key2 = part.groups()
        key = attr if attr is not None else (key1 if key1 is not None else key2)
        if not isinstance(value, dict) or key not in value or (attr is not None and attr in _DICT_ATTRS):
            return _NOT_PLAIN
        value = value[key]
    return value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else _NOT_PLAIN


def core_compose_is_as_verified():
    """Constructable._compose(template, variables, disable_lookups=...) is what the constructed
    helpers call for every compose, groups and keyed_groups entry: the override below relies on it."""
    try:
        params = list(inspect.signature(Constructable._compose).parameters)
    except (AttributeError, TypeError, ValueError):
        return False
    return params == ["self", "template", "variables", "disable_lookups"]


_CORE_COMPOSE_OK = core_compose_is_as_verified()


def load_fleet_aws():
    """The collection's boto3 client layer, imported on first use (a cache hit never imports boto3)."""
    from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws

    return aws


def load_ssm_session():
    """The SSM ProxyCommand builder (imports the client layer: only when hosts are wired)."""
    from ansible_collections.ec2fleet.fleet.plugins.module_utils import ssm_session

    return ssm_session


def _plain(value):
    """A plain str: values from the file carry Ansible's trust tag, and must not reach hostvars
    as templates (or differ between a cold run and a cache hit)."""
    return value.encode().decode() if isinstance(value, str) else value


class FleetAccount:
    """One account of the inventory: its credentials, regions and filters, and once connected
    its client factory. ``implicit`` is the one account of a file without ``accounts``."""

    def __init__(self, index, profile, assume_role_arn, role_session_name, regions, filters,
                 alias=None, implicit=False):
        self.index = index
        self.profile = profile
        self.assume_role_arn = assume_role_arn
        self.role_session_name = role_session_name
        self.regions = regions
        self.filters = filters
        self.alias = alias
        self.implicit = implicit
        self.clients = None
        match = _ROLE_ARN.match(assume_role_arn or "")
        self.role_account_id = match.group(1) if match else None

    @property
    def label(self):
        """How messages name the account."""
        return self.alias or self.assume_role_arn or f"profile {self.profile}"

    def identity(self):
        """What the account's credentials are, for the cache key."""
        return [self.profile or "", self.assume_role_arn or "", self.role_session_name or "", self.alias or ""]


class AccountFailed(Exception):
    """An account could not be inventoried; the message is one line, without the account's name."""


class Row(NamedTuple):
    """One instance found in one (account, region), with what the other services said of it."""

    account: FleetAccount
    region: str
    owner_id: str | None
    instance: dict
    asg: dict | None
    target_groups: list
    ssm: dict | None


def safe_group_name(kind, value):
    """role_web, asg_web_prod, az_us_east_1a: always a valid Ansible group name."""
    return kind + "_" + _GROUP_UNSAFE.sub("_", str(value).lower())


def _iso(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def _jsonable(value):
    """Descriptions from botocore carry datetimes; hostvars and the cache want plain JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return _iso(value)


def _filter_list(filters):
    """aws_ec2 filter dict -> boto3 Filters list (values become lists of strings)."""
    result = []
    for name, value in filters.items():
        values = value if isinstance(value, list) else [value]
        result.append({"Name": str(name), "Values": [str(v) if not isinstance(v, bool) else str(v).lower() for v in values]})
    return result


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "ec2fleet.fleet.ec2_fleet"

    # -- entry points -------------------------------------------------------------------------

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".ec2_fleet.yml", ".ec2_fleet.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path)
        self._fleet_path = path
        self._read_config_data(path)  # reads the file once; set_options below checks it first
        self._check_options()

        cache_key = self._fleet_cache_key(path)
        result = self._cache_get(cache_key) if self.get_option("cache") and cache else None
        if result is None:
            result = self._build_from_aws()
            if self.get_option("cache"):
                # One JSON string per entry: plain data, decoded at C speed on a hit (the cache
                # plugin's own decoder is far slower on thousands of small dicts).
                self._cache[cache_key] = {"format": CACHE_FORMAT, "inventory": json.dumps(result, separators=(",", ":"))}
        else:
            for warning in result.get("warnings", []):
                display.warning(warning)
            self._load(result)

    def _cache_get(self, cache_key):
        try:
            entry = self._cache[cache_key]
        except KeyError:
            return None
        if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or not isinstance(entry.get("inventory"), str):
            return None  # written by another version: rebuild
        try:
            return json.loads(entry["inventory"])
        except ValueError:
            return None

    # -- options --------------------------------------------------------------------------------

    def set_options(self, task_keys=None, var_options=None, direct=None):
        if direct is not None:
            self._check_raw_options(direct, getattr(self, "_fleet_path", "the inventory file"))
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)

    def _check_raw_options(self, config, path):
        """Names, types and choices of the file's options, checked before Ansible's own handling
        so the error names the option and its allowed values (Ansible's does not for lists)."""
        definitions = self._fleet_option_defs()
        by_name = {}
        for name, spec in definitions.items():
            by_name[name] = spec
            for alias in spec.get("aliases") or []:
                by_name[alias] = spec
        unknown = sorted(str(k) for k in config if k not in by_name)
        if unknown:
            raise AnsibleParserError(
                f"ec2_fleet: unknown option(s) {', '.join(unknown)} in {path}; "
                f"valid options are: {', '.join(sorted(definitions))}"
            )
        for key, value in config.items():
            spec = by_name[key]
            kind = spec.get("type", "str")
            if value is None:
                continue
            expected = {"list": list, "dict": dict}.get(kind)
            if expected and not isinstance(value, expected):
                raise AnsibleParserError(f"ec2_fleet: option {key} must be a {kind}, got {type(value).__name__} {value!r}")
            if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise AnsibleParserError(f"ec2_fleet: option {key} must be an integer, got {value!r}")
            if kind == "bool" and not isinstance(value, bool):
                raise AnsibleParserError(f"ec2_fleet: option {key} must be true or false, got {value!r}")
            choices = spec.get("choices")
            if choices:
                values = value if isinstance(value, list) else [value]
                bad = [v for v in values if v not in choices]
                if bad:
                    raise AnsibleParserError(
                        f"ec2_fleet: option {key} has invalid value(s) {', '.join(map(str, bad))}; "
                        f"allowed values are: {', '.join(map(str, choices))}"
                    )

    def _check_options(self):
        """Checks that need the resolved values (environment and defaults applied)."""
        for name in ("max_attempts", "max_concurrency", "bastion_port"):
            value = self.get_option(name)
            if value is None or value < 1:
                raise AnsibleParserError(f"ec2_fleet: option {name} must be an integer >= 1, got {value!r}")
        for name in ("include_filters", "exclude_filters"):
            if not all(isinstance(f, dict) for f in self.get_option(name)):
                raise AnsibleParserError(f"ec2_fleet: option {name} must be a list of dicts of filter name to value(s)")
        self._check_regions("option regions", self.get_option("regions"))
        self._hostname_specs = [self._parse_hostname(p) for p in self.get_option("hostnames")]
        if not self._hostname_specs:
            raise AnsibleParserError(f"ec2_fleet: option hostnames must not be empty; allowed entries: {HOSTNAME_CHOICES}")
        program = self.get_option("ssm_proxy_command")
        if not program or not program.strip() or any(char in program for char in ('"', "\\", "\n")):
            raise AnsibleParserError(
                f"ec2_fleet: option ssm_proxy_command must be a program (and its options) without double quotes, "
                f"backslashes or newlines, got {program!r}"
            )
        for name, what in (("bastion_ssh_args", "ssh options"), ("bastion_user", "a user name")):
            value = self.get_option(name)
            # Both go inside the double-quoted ProxyCommand: these would break its quoting.
            if value and any(char in value for char in ('"', "\\", "\n")):
                raise AnsibleParserError(
                    f"ec2_fleet: option {name} must be {what} without double quotes, backslashes or newlines, got {value!r}"
                )
        self._accounts = self._parse_accounts()

    @staticmethod
    def _check_regions(what, regions):
        bad = [r for r in regions if not isinstance(r, str) or not _REGION.match(r)]
        if bad:
            raise AnsibleParserError(
                f"ec2_fleet: {what} has invalid region name(s) {', '.join(map(str, bad))}; "
                "expected names like us-east-1 (or an empty list for every enabled region)"
            )

    def _parse_accounts(self):
        """The accounts to inventory: the entries of ``accounts``, else the one implicit account."""
        profile, role = _plain(self.get_option("profile")), _plain(self.get_option("assume_role_arn"))
        session_name = _plain(self.get_option("role_session_name"))
        regions, filters = [_plain(r) for r in self.get_option("regions")], self.get_option("filters")
        entries = self.get_option("accounts")
        if not entries:
            return [FleetAccount(0, profile, role, session_name, regions, filters, implicit=True)]
        if role:
            raise AnsibleParserError(
                "ec2_fleet: options accounts and assume_role_arn cannot be combined; give each account its "
                "assume_role_arn (a role to assume first goes into the profile: role_arn and source_profile)"
            )
        accounts, seen, groups = [], set(), {}
        for index, entry in enumerate(entries, 1):
            where = f"option accounts, entry {index}"
            if not isinstance(entry, dict):
                raise AnsibleParserError(f"ec2_fleet: {where} must be a dict with assume_role_arn or profile, got {entry!r}")
            unknown = sorted(str(k) for k in entry if k not in ACCOUNT_KEYS)
            if unknown:
                raise AnsibleParserError(
                    f"ec2_fleet: {where} has unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(ACCOUNT_KEYS)}"
                )
            for key in ("assume_role_arn", "profile", "alias", "role_session_name"):
                if entry.get(key) is not None and (not isinstance(entry[key], str) or not entry[key]):
                    raise AnsibleParserError(f"ec2_fleet: {where}: {key} must be a non-empty string, got {entry[key]!r}")
            if not entry.get("assume_role_arn") and not entry.get("profile"):
                raise AnsibleParserError(f"ec2_fleet: {where} needs assume_role_arn or profile")
            if entry.get("assume_role_arn") and not _ROLE_ARN.match(entry["assume_role_arn"]):
                raise AnsibleParserError(
                    f"ec2_fleet: {where}: assume_role_arn {entry['assume_role_arn']!r} is not a role ARN "
                    "(arn:aws:iam::<12-digit account id>:role/<name>)"
                )
            if not isinstance(entry.get("regions", []), list):
                raise AnsibleParserError(f"ec2_fleet: {where}: regions must be a list, got {entry['regions']!r}")
            self._check_regions(f"{where}: regions", entry.get("regions", []))
            if not isinstance(entry.get("filters", {}), dict):
                raise AnsibleParserError(f"ec2_fleet: {where}: filters must be a dict of filter name to value(s), got {entry['filters']!r}")
            account = FleetAccount(
                index,
                profile=_plain(entry.get("profile")) or profile,
                assume_role_arn=_plain(entry.get("assume_role_arn")),
                role_session_name=_plain(entry.get("role_session_name")) or session_name,
                regions=[_plain(r) for r in entry["regions"]] if entry.get("regions") else regions,
                filters={**filters, **entry.get("filters", {})},
                alias=_plain(entry.get("alias")),
            )
            credentials = (account.profile, account.assume_role_arn)
            if credentials in seen:
                raise AnsibleParserError(f"ec2_fleet: {where} repeats the credentials of an earlier account ({account.label})")
            seen.add(credentials)
            if account.alias:
                group = safe_group_name("account", account.alias)
                if group in groups:
                    raise AnsibleParserError(
                        f"ec2_fleet: {where}: alias {account.alias!r} gives the group {group}, as {groups[group]!r} does; "
                        "choose aliases that differ"
                    )
                groups[group] = account.alias
            accounts.append(account)
        return accounts

    def _fleet_option_defs(self):
        from ansible import constants as C

        # Registered under the name the loader found the plugin by (its Python path in a collection).
        return C.config.get_configuration_definitions("inventory", getattr(self, "_load_name", self.NAME)) or {}

    def _parse_hostname(self, pref):
        if isinstance(pref, dict):
            unknown = set(pref) - {"name", "prefix", "separator"}
            if "name" not in pref or unknown:
                raise AnsibleParserError(
                    f"ec2_fleet: option hostnames: a dict entry needs 'name' and may have 'prefix' and "
                    f"'separator' only, got {sorted(map(str, pref))}"
                )
            return (
                self._parse_hostname_source(pref["name"]),
                self._parse_hostname_source(pref["prefix"]) if pref.get("prefix") else None,
                str(pref.get("separator", "_")),
            )
        return (self._parse_hostname_source(pref), None, None)

    @staticmethod
    def _parse_hostname_source(source):
        if not isinstance(source, str) or not source:
            raise AnsibleParserError(f"ec2_fleet: option hostnames: invalid entry {source!r}; allowed: {HOSTNAME_CHOICES}")
        if source.startswith("tag:") and len(source) > 4:
            keys = []
            for part in source[4:].split(","):
                key, eq, value = part.partition("=")
                keys.append((key, value if eq else None))
            return ("tag", keys)
        if source in HOSTNAME_SOURCES:
            return ("field", HOSTNAME_SOURCES[source])
        raise AnsibleParserError(f"ec2_fleet: option hostnames: unknown source {source!r}; allowed: {HOSTNAME_CHOICES}")

    def _fleet_cache_key(self, path):
        """Keyed by the file's content, the credentials profile and every account's identity (its
        profile, whether its own or the file's, and its role): a changed config never hits."""
        with open(path, "rb") as handle:
            content = handle.read()
        identity = json.dumps(
            [self.get_option("profile") or "", self.get_option("assume_role_arn") or "",
             self.get_option("endpoint_url") or "", CACHE_FORMAT,
             [account.identity() for account in self._accounts]],
        ).encode()
        digest = hashlib.sha256(content + b"\0" + identity).hexdigest()[:24]
        return f"{self.NAME}_{digest}"

    # -- AWS ------------------------------------------------------------------------------------

    def _build_from_aws(self):
        fleet_aws = load_fleet_aws()
        self._fleet_aws = fleet_aws
        self._warnings = []
        by_account = {account.index: [] for account in self._accounts}
        failures = {}  # account index -> the account's first failure (one line)
        with ThreadPoolExecutor(max_workers=self.get_option("max_concurrency"), thread_name_prefix="ec2_fleet") as pool:
            # Accounts connect (assume their role, resolve their regions) in the pool too; each
            # account's regions are queued as soon as it is connected.
            connecting = {pool.submit(self._connect, account): account for account in self._accounts}
            queries = []
            for future in as_completed(connecting):
                account = connecting[future]
                try:
                    regions = future.result()
                except AccountFailed as exc:
                    failures[account.index] = str(exc)
                    continue
                queries.extend((account, region, pool.submit(self._query_region, account, region)) for region in regions)
            queries.sort(key=lambda query: query[0].index)
            for account, region, future in queries:
                try:
                    by_account[account.index].extend(future.result())
                except fleet_aws.FLEET_AWS_ERRORS as exc:
                    if fleet_aws.error_kind(exc) == "region_disabled":
                        self._warn(f"ec2_fleet: {self._for(account)}skipping region {region}: not enabled for this account")
                        continue
                    failures.setdefault(account.index, fleet_aws.format_aws_error(
                        exc, action="query EC2 inventory", where=account.clients.where(region)))
        self._account_failures(failures)

        rows = []
        for account in self._accounts:
            if account.index not in failures:
                rows.extend(by_account[account.index])
        return self._populate(rows)

    @staticmethod
    def _for(account):
        """The prefix that names an account in a message (none for the implicit one)."""
        return "" if account.implicit else f"account {account.label}: "

    def _account_failures(self, failures):
        """One line per failed account: fatal (the implicit account, strict_accounts) or a warning."""
        if not failures:
            return
        by_index = {account.index: account for account in self._accounts}
        lines = [f"ec2_fleet: {self._for(by_index[i])}{failures[i]}" for i in sorted(failures)]
        if by_index[min(failures)].implicit:
            raise AnsibleError(lines[0])
        if self.get_option("strict_accounts"):
            more = f" ({len(lines) - 1} more account(s) failed)" if len(lines) > 1 else ""
            raise AnsibleError(f"{lines[0]}{more}; strict_accounts=true (false skips a failing account with a warning)")
        for line in lines:
            self._warn(f"{line}; skipping the account (strict_accounts=false)")

    def _connect(self, account):
        """The account's clients (its role assumed once) and the regions to query in it."""
        fleet_aws = self._fleet_aws
        try:
            _session, account.clients = fleet_aws.fleet_clients(
                region=account.regions[0] if account.regions else None,
                profile=account.profile,
                assume_role_arn=account.assume_role_arn,
                role_session_name=account.role_session_name,
                endpoint_url=self.get_option("endpoint_url"),
                retry_mode=self.get_option("retry_mode"),
                max_attempts=self.get_option("max_attempts"),
                max_pool_connections=max(10, self.get_option("max_concurrency") * 3),
            )
        except fleet_aws.FleetAWSError as exc:
            raise AccountFailed(str(exc)) from None
        return self._resolve_regions(account)

    def _warn(self, message):
        self._warnings.append(message)
        display.warning(message)

    def _resolve_regions(self, account):
        fleet_aws = self._fleet_aws
        regions = account.regions
        ec2 = account.clients("ec2")
        try:
            if not regions:
                described = ec2.describe_regions(
                    Filters=[{"Name": "opt-in-status", "Values": ["opt-in-not-required", "opted-in"]}]
                )["Regions"]
                return sorted(r["RegionName"] for r in described)
            described = ec2.describe_regions(AllRegions=True)["Regions"]
        except fleet_aws.FLEET_AWS_ERRORS as exc:
            if regions and fleet_aws.error_kind(exc) == "access_denied":
                return regions  # cannot check opt-in; a disabled region is still caught per call
            raise AccountFailed(fleet_aws.format_aws_error(exc, action="list regions", where=account.clients.where())) from None
        status = {r["RegionName"]: r.get("OptInStatus", "opt-in-not-required") for r in described}
        enabled = []
        for region in dict.fromkeys(regions):
            if status.get(region) == "not-opted-in":
                self._warn(f"ec2_fleet: {self._for(account)}skipping region {region}: not enabled for this account "
                           "(opt-in status not-opted-in)")
            elif region not in status:
                self._warn(f"ec2_fleet: {self._for(account)}skipping region {region}: not a region this account knows")
            else:
                enabled.append(region)
        return enabled

    def _state_filter_needed(self, filters):
        return not any(f["Name"] == "instance-state-name" for f in filters)

    def _describe(self, ec2, filters):
        """(owner account id, instance) of every instance matching the filters."""
        if self._state_filter_needed(filters):
            filters = [*filters, {"Name": "instance-state-name", "Values": list(self.get_option("states"))}]
        instances = []
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters, PaginationConfig={"PageSize": 1000}):
            for reservation in page["Reservations"]:
                owner = reservation.get("OwnerId")
                instances.extend((owner, instance) for instance in reservation["Instances"])
        return instances

    def _query_region(self, account, region):
        clients = account.clients
        ec2 = clients("ec2", region)
        includes = []
        if account.filters:
            includes.append(account.filters)
        includes.extend(self.get_option("include_filters"))
        excluded = set()
        for filters in self.get_option("exclude_filters"):
            excluded.update(i["InstanceId"] for _owner, i in self._describe(ec2, _filter_list(filters)))
        seen = {}
        for filters in includes or [{}]:
            for owner, instance in self._describe(ec2, _filter_list(filters)):
                if instance["InstanceId"] not in excluded:
                    seen.setdefault(instance["InstanceId"], (owner, instance))
        found = list(seen.values())
        asg_info = self._query_asgs(clients, region) if self.get_option("asg") and found else {}
        tg_info = self._query_target_groups(clients, region) if self.get_option("target_groups") and found else {}
        ssm_info = self._query_ssm(clients, region) if self.get_option("ssm_hostvars") and found else {}
        return [Row(account, region, owner or account.role_account_id, instance, asg_info.get(instance["InstanceId"]),
                    tg_info.get(instance["InstanceId"], []), ssm_info.get(instance["InstanceId"]))
                for owner, instance in found]

    def _optional_call(self, what, clients, region, call):
        """Auto Scaling / ELB / SSM data: denied access fails, or with strict_permissions=false warns."""
        fleet_aws = self._fleet_aws
        try:
            return call()
        except fleet_aws.FLEET_AWS_ERRORS as exc:
            if fleet_aws.error_kind(exc) == "access_denied" and not self.get_option("strict_permissions"):
                self._warn("ec2_fleet: " + fleet_aws.format_aws_error(exc, action=what, where=clients.where(region))
                           + "; continuing without it (strict_permissions=false)")
                return {}
            raise

    def _query_asgs(self, clients, region):
        def call():
            autoscaling = clients("autoscaling", region)
            info = {}
            for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate(PaginationConfig={"PageSize": 100}):
                for group in page["AutoScalingGroups"]:
                    for member in group.get("Instances", []):
                        template = member.get("LaunchTemplate") or {}
                        info[member["InstanceId"]] = {
                            "asg_name": group["AutoScalingGroupName"],
                            "asg_lifecycle_state": member.get("LifecycleState"),
                            "asg_health_status": member.get("HealthStatus"),
                            "asg_protected_from_scale_in": bool(member.get("ProtectedFromScaleIn", False)),
                            "asg_launch_template_version": template.get("Version"),
                        }
            return info

        return self._optional_call("describe Auto Scaling groups", clients, region, call)

    def _query_target_groups(self, clients, region):
        def call():
            elbv2 = clients("elbv2", region)
            membership = {}
            for page in elbv2.get_paginator("describe_target_groups").paginate():
                for group in page["TargetGroups"]:
                    if group.get("TargetType", "instance") != "instance":
                        continue
                    arn = group["TargetGroupArn"]
                    health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
                    for target in health:
                        membership.setdefault(target["Target"]["Id"], []).append(arn)
            return membership

        return self._optional_call("describe target groups", clients, region, call)

    def _query_ssm(self, clients, region):
        """One sweep of the region's SSM managed EC2 instances (50 a page, the API's maximum)."""
        def call():
            ssm = clients("ssm", region)
            info = {}
            pages = ssm.get_paginator("describe_instance_information").paginate(
                Filters=[{"Key": "ResourceType", "Values": ["EC2Instance"]}], PaginationConfig={"PageSize": 50})
            for page in pages:
                for item in page["InstanceInformationList"]:
                    info[item["InstanceId"]] = {
                        "ssm_ping_status": item.get("PingStatus"),
                        "ssm_agent_version": item.get("AgentVersion"),
                        "ssm_platform_type": item.get("PlatformType"),
                        "ssm_platform_name": item.get("PlatformName"),
                        "ssm_platform_version": item.get("PlatformVersion"),
                    }
            return info

        return self._optional_call("describe SSM managed instances", clients, region, call)

    # -- building the inventory -----------------------------------------------------------------

    def _hostname_value(self, source, instance, tags):
        kind, spec = source
        if kind == "tag":
            for key, value in spec:
                if value is None:
                    if tags.get(key):
                        return str(tags[key])
                elif tags.get(key) == value:
                    return f"{key}_{value}"
            return None
        value = instance
        for part in spec:
            value = value.get(part) if isinstance(value, dict) else None
        return str(value) if value else None

    def _hostname(self, instance, tags):
        for name_source, prefix_source, separator in self._hostname_specs:
            name = self._hostname_value(name_source, instance, tags)
            if not name:
                continue
            if prefix_source is not None:
                prefix = self._hostname_value(prefix_source, instance, tags)
                if prefix:
                    name = prefix + separator + name
            # ':' is not valid in an inventory hostname (aws_ec2 sanitizes it the same way)
            return name.replace(":", "_")
        return instance["InstanceId"]

    def _curated_vars(self, row, tags):
        region, instance = row.region, row.instance
        placement = instance.get("Placement") or {}
        state = instance.get("State") or {}
        hostvars = {
            "ec2_instance_id": instance["InstanceId"],
            "ec2_account_id": row.owner_id,
            "ec2_account_alias": row.account.alias,
            "ec2_region": region,
            "ec2_availability_zone": placement.get("AvailabilityZone"),
            "ec2_vpc_id": instance.get("VpcId"),
            "ec2_subnet_id": instance.get("SubnetId"),
            "ec2_private_ip_address": instance.get("PrivateIpAddress"),
            "ec2_public_ip_address": instance.get("PublicIpAddress"),
            "ec2_private_dns_name": instance.get("PrivateDnsName") or None,
            "ec2_public_dns_name": instance.get("PublicDnsName") or None,
            "ec2_instance_type": instance.get("InstanceType"),
            "ec2_image_id": instance.get("ImageId"),
            "ec2_launch_time": _iso(instance.get("LaunchTime")),
            "ec2_state": state.get("Name"),
            "ec2_key_name": instance.get("KeyName"),
            "ec2_security_group_ids": [g["GroupId"] for g in instance.get("SecurityGroups") or []],
            "ec2_tags": tags,
            "asg_name": None,
            "asg_lifecycle_state": None,
            "asg_health_status": None,
            "asg_protected_from_scale_in": None,
            "asg_launch_template_version": None,
        }
        if row.asg:
            hostvars.update(row.asg)
        if self.get_option("target_groups"):
            hostvars["target_group_arns"] = sorted(row.target_groups)
        if self.get_option("ssm_hostvars"):
            hostvars.update(row.ssm or dict.fromkeys(SSM_HOSTVARS))
        if self.get_option("full_description"):
            full = camel_dict_to_snake_dict(_jsonable(instance), ignore_list=["Tags"])
            full["tags"] = tags
            if "placement" in full and full["placement"].get("availability_zone"):
                full["placement"]["region"] = region
            for key, value in full.items():
                hostvars.setdefault(key, value)
        return hostvars

    def _populate(self, rows):
        """Instances -> hosts, groups and vars in the inventory; returns the cacheable result
        (None when caching is off)."""
        rows.sort(key=lambda row: (row.instance["InstanceId"], row.account.index))
        default_groups = set(self.get_option("default_groups"))
        bastion_key, bastion_value = self.get_option("bastion_tag_key"), self.get_option("bastion_tag_value")
        role_tag, env_tag = self.get_option("role_tag"), self.get_option("env_tag")
        strict_hostnames = self.get_option("strict_hostnames")

        hosts = {}  # name -> hostvars
        groups = {}  # group -> [host names]
        owners = {}  # name -> instance id (and account, when there are several)
        account_of = {}  # name -> FleetAccount
        for row in rows:
            instance, account = row.instance, row.account
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags") or []}
            name = self._hostname(instance, tags)
            instance_id = instance["InstanceId"]
            owner = instance_id if account.implicit else f"{instance_id} (account {account.label})"
            if name in owners:
                message = f"ec2_fleet: hostname {name!r} of {owner} is already used by {owners[name]}"
                if strict_hostnames:
                    raise AnsibleError(message + " (strict_hostnames=true); choose hostnames that are unique")
                unique = f"{name}-{instance_id}"
                self._warn(f"{message}; naming it {unique!r}")
                name = unique
            owners[name] = owner
            account_of[name] = account
            hostvars = self._curated_vars(row, tags)
            hostvars["ec2_is_bastion"] = tags.get(bastion_key) == bastion_value
            hosts[name] = hostvars

            member_of = []
            if hostvars["ec2_is_bastion"] and "bastion" in default_groups:
                member_of.append("bastion")
            if "asg" in default_groups and hostvars["asg_name"]:
                member_of.append(safe_group_name("asg", hostvars["asg_name"]))
            if "role" in default_groups and tags.get(role_tag):
                member_of.append(safe_group_name("role", tags[role_tag]))
            if "env" in default_groups and tags.get(env_tag):
                member_of.append(safe_group_name("env", tags[env_tag]))
            if "account" in default_groups and not account.implicit and (account.alias or row.owner_id):
                member_of.append(safe_group_name("account", account.alias or row.owner_id))
            if "region" in default_groups:
                member_of.append(safe_group_name("region", row.region))
            if "az" in default_groups and hostvars["ec2_availability_zone"]:
                member_of.append(safe_group_name("az", hostvars["ec2_availability_zone"]))
            for group in member_of:
                groups.setdefault(group, []).append(name)

        self._wire_connections(hosts, account_of)

        # Hosts and default groups go in first, then compose/groups/keyed_groups run per host
        # (compose last, so a file can override the wiring).
        inventory = self.inventory
        for group in groups:
            inventory.add_group(group)
        for name, hostvars in hosts.items():
            inventory.add_host(name)
            set_host_vars(inventory, name, hostvars)
        for group, members in groups.items():
            for name in members:
                inventory.add_child(group, name)
        self._construct(hosts)
        # The snapshot (a JSON round trip of every host's vars) only feeds the cache.
        return self._snapshot(hosts) if self.get_option("cache") else None

    def _wire_connections(self, hosts, account_of):
        """ansible_host and ansible_ssh_common_args of every host, by its connection mode."""
        bastions = {}  # (account, VPC) -> the address of its first bastion
        for name, hostvars in sorted(hosts.items(), key=lambda item: item[1]["ec2_instance_id"]):
            if hostvars["ec2_is_bastion"] and hostvars["ec2_vpc_id"]:
                address = hostvars["ec2_public_ip_address"] or hostvars["ec2_public_dns_name"]
                if address:
                    bastions.setdefault((account_of[name].index, hostvars["ec2_vpc_id"]), address)
        proxies = {}  # (account, region) -> the SSM ProxyCommand's ssh arguments
        for name, hostvars in hosts.items():
            account = account_of[name]
            jump = bastions.get((account.index, hostvars["ec2_vpc_id"]))
            mode = self._connection_mode(name, hostvars)
            if mode == "auto":
                mode = "bastion" if jump else "ssm"
            hostvars["ec2_connection_mode"] = mode
            if mode == "ssm":
                hostvars["ansible_host"] = hostvars["ec2_instance_id"]
                key = (account.index, hostvars["ec2_region"])
                if key not in proxies:
                    proxies[key] = self._ssm_ssh_args(account, hostvars["ec2_region"])
                hostvars["ansible_ssh_common_args"] = proxies[key]
            elif mode == "direct":
                hostvars["ansible_host"] = hostvars["ec2_public_ip_address"] or hostvars["ec2_private_ip_address"]
            else:
                self._wire_bastion(hostvars, jump)

    def _connection_mode(self, name, hostvars):
        """The inventory's connection_mode, unless the host's connection_mode_tag names another."""
        default = _plain(self.get_option("connection_mode"))
        tag = self.get_option("connection_mode_tag")
        value = hostvars["ec2_tags"].get(tag) if tag else None
        if value is None:
            return default
        if value.strip().lower() in CONNECTION_MODES:
            return value.strip().lower()
        self._warn(f"ec2_fleet: host {name}: tag {tag}={value!r} is not a connection mode "
                   f"({', '.join(CONNECTION_MODES)}); using connection_mode={default}")
        return default

    def _wire_bastion(self, hostvars, jump):
        mode = self.get_option("ssh_via_bastion")
        public = hostvars["ec2_public_ip_address"]
        private = hostvars["ec2_private_ip_address"]
        if hostvars["ec2_is_bastion"] or mode == "never":
            hostvars["ansible_host"] = public or private
            return
        if mode == "when_private" and public:
            hostvars["ansible_host"] = public
            return
        hostvars["ansible_host"] = private or public
        if jump:
            hostvars["ansible_ssh_common_args"] = self._bastion_hop(jump)

    def _bastion_hop(self, jump):
        """ansible_ssh_common_args through the bastion at ``jump``.

        ssh applies command-line options (ansible.cfg's StrictHostKeyChecking=yes) to the
        destination only, never to a ProxyJump hop: the hop is an explicit ``ssh -W`` carrying
        bastion_ssh_args. Ansible, Mitogen and the ops tools split the value with shlex: the
        double quotes keep the ProxyCommand one argument."""
        user, port = self.get_option("bastion_user"), self.get_option("bastion_port")
        destination = f"{user}@{jump}" if user else jump
        ssh_args = (self.get_option("bastion_ssh_args") or "").strip()
        if not ssh_args:  # the operator's choice: the hop follows ~/.ssh/config
            return f"-o ProxyJump={destination}" + (f":{port}" if port != 22 else "")
        # bastion_ssh_args is already shell words, kept as written; the rest is quoted for the shell
        # ssh runs the ProxyCommand with.
        hop = ["ssh", "-W", "%h:%p", ssh_args, *(["-p", str(port)] if port != 22 else []), shlex.quote(destination)]
        return f'-o ProxyCommand="{" ".join(hop)}"'

    def _ssm_ssh_args(self, account, region):
        """The ProxyCommand of one (account, region): its credentials and region travel with it."""
        ssm_session = load_ssm_session()
        try:
            command = ssm_session.proxy_command(
                region,
                profile=account.profile,
                role_arn=account.assume_role_arn,
                role_session_name=account.role_session_name,
                # The role is assumed where the inventory assumed it (an STS endpoint, the emulator).
                endpoint_url=self.get_option("endpoint_url") if account.assume_role_arn else None,
                program=self.get_option("ssm_proxy_command"),
            )
        except ValueError as exc:
            raise AnsibleError(f"ec2_fleet: {self._for(account)}cannot wire SSM connections: {exc}") from None
        return ssm_session.ssh_common_args(command)

    def _construct(self, hosts):
        compose = self.get_option("compose")
        groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        if not (compose or groups or keyed_groups):
            return
        strict = self.get_option("strict")
        for name in hosts:
            host = self.inventory.get_host(name)
            # compose sees the host's vars as set so far (the wiring included); groups and
            # keyed_groups then see the composed vars too, as in aws_ec2. The vars are fetched
            # once per host instead of once per entry.
            self._set_composite_vars(compose, host.get_vars(), name, strict=strict)
            if groups or keyed_groups:
                hostvars = host.get_vars()
                self._add_host_to_composed_groups(groups, hostvars, name, strict=strict, fetch_hostvars=False)
                self._add_host_to_keyed_groups(keyed_groups, hostvars, name, strict=strict, fetch_hostvars=False)

    def _compose(self, template, variables, disable_lookups=...):
        """Most compose and keyed_groups entries are a bare variable path; those are looked up
        without Jinja (the bulk of their cost). Anything else goes to Ansible's templar as usual,
        and so does everything when core's _compose is not the one this was verified against."""
        if _CORE_COMPOSE_OK and not self._extra_vars_apply():
            value = plain_path_value(template, variables)
            if value is not _NOT_PLAIN:
                return value
        return super()._compose(template, variables, disable_lookups)

    def _extra_vars_apply(self):
        """use_extra_vars makes extra vars override host vars in expressions: the templar's job."""
        try:
            return bool(self.get_option("use_extra_vars")) and bool(self._vars)
        except KeyError:
            return False

    def _snapshot(self, hosts):
        """The processed inventory (hosts, vars, groups, hierarchy) for the cache."""
        names = set(hosts)
        host_vars = {}
        touched = set()
        for name in hosts:
            host = self.inventory.hosts[name]
            hv = dict(host.vars)
            hv.pop("inventory_file", None)
            hv.pop("inventory_dir", None)
            host_vars[name] = hv
            touched.update(g.name for g in host.groups)
        touched.discard("all")
        touched.discard("ungrouped")
        # Parents created by keyed_groups' parent_group hold only groups: walk up from each group.
        pending = list(touched)
        while pending:
            group = self.inventory.groups[pending.pop()]
            for parent in group.parent_groups:
                if parent.name not in touched and parent.name not in ("all", "ungrouped"):
                    touched.add(parent.name)
                    pending.append(parent.name)
        group_data = {}
        for gname in [g for g in self.inventory.groups if g in touched]:  # creation order, as on a cold run
            group = self.inventory.groups[gname]
            group_data[gname] = {
                "hosts": [h.name for h in group.hosts if h.name in names],
                "children": [c.name for c in group.child_groups],
            }
        # A JSON round trip drops Ansible's data tags (origin, trust) from composed values, so the
        # cache holds plain data and a hit gives the same vars as a cold run.
        return json.loads(json.dumps({"hosts": host_vars, "groups": group_data, "warnings": list(self._warnings)}))

    def _load(self, result):
        """A cache hit: rebuild hosts, groups and vars as they were, without any AWS call."""
        inventory = self.inventory
        for gname in result["groups"]:
            inventory.add_group(gname)
        for name, hostvars in result["hosts"].items():
            inventory.add_host(name)
            set_host_vars(inventory, name, hostvars)
        for gname, data in result["groups"].items():
            for child in data["children"]:
                inventory.add_child(gname, child)
            for name in data["hosts"]:
                inventory.add_child(gname, name)
