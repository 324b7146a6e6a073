"""docs/iam/deploy-policy.json, the deploy's least-privilege IAM policy, checked two ways.

(a) Statically, against the code: every boto3 operation the deploy's Python calls (the modules its
    playbooks run, the module_utils they import and the inventory plugin it reads hosts through),
    found in the AST of the calls made through the collection's client layer (``aws.call/find/
    paginate("service", "operation", ...)``, ``aws.client("service").operation(...)``, paginators,
    waiters, clients kept in a variable), becomes its IAM action (service prefix from the client
    name, the operation's name from botocore's model); the policy must allow each, on the resource
    the deploy uses it on (an IAM-style evaluator: Allow/Deny, Action/NotAction, Resource, ``*`` and
    ``?``). A new call without its policy line fails here. The third-party modules the playbooks
    run have their actions declared below, and that declaration is checked against their source.
    The policy must also grant nothing the deploy does not need.

(b) Against the emulator's IAM: moto validates the document on CreatePolicy (MalformedPolicyDocument).
    A second moto server started with INITIAL_NO_AUTH_ACTION_COUNT enforces IAM: a user holding only
    this policy makes one allowed call per service and is denied calls outside it. moto evaluates
    every request of these services against the resource ``*`` and names CloudWatch's actions after
    its SigV4 signing name (``monitoring:``), so the ARN-scoped statements and the CloudWatch
    statement are shown to be what stops moto there (same document, resources widened / the
    ``monitoring:`` name added) and are checked on their real ARNs by (a).
"""

from __future__ import annotations

import ast
import copy
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import boto3
import botocore.exceptions
import botocore.session
import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import ACCESS_DENIED_CODES
from inventory_fleet import AMI

from ec2fleet.emulator import MotoServer

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POLICY_PATH = REPO / "docs" / "iam" / "deploy-policy.json"

# The playbooks the policy is for (deploy-recover.yml: as soon as it exists).
PLAYBOOKS = ("deploy.yml", "rollback.yml", "deploy-recover.yml")
# Scanned even if a restructured playbook stops naming one of them.
DEPLOY_MODULES = ("deploy_lock", "deploy_checkpoint", "asg_processes", "asg_standby", "service_state", "target_wait",
                  "lb_metrics", "deploy_report", "deploy_settings")
# The deploy reads its hosts through the inventory plugin, with the same credentials.
ALSO_SCANNED = ("plugins/inventory/ec2_fleet.py",)
UTILS_PACKAGE = "ansible_collections.ec2fleet.fleet.plugins.module_utils"
INCLUDE = r"(?:include_tasks|import_tasks|import_playbook|file)[ \t]*:[ \t]*['\"]?([\w./-]+\.ya?ml)\b"

# boto3 client name -> IAM service prefix.
IAM_PREFIX = {"autoscaling": "autoscaling", "elbv2": "elasticloadbalancing", "elb": "elasticloadbalancing",
              "ssm": "ssm", "ec2": "ec2", "cloudwatch": "cloudwatch", "sts": "sts", "s3": "s3"}
# How the client layer hands out clients: AwsCalls.client(service), ClientFactory called as clients(service).
CLIENT_FACTORIES = frozenset({"client", "clients", "_clients"})
AWSCALLS_METHODS = frozenset({"call", "find", "paginate"})
CLIENT_HELPERS = frozenset({"get_paginator", "get_waiter", "can_paginate", "close"})
# The only places an operation may be named at run time: the layer's own dispatch.
DISPATCH = {("plugins/module_utils/aws.py", "AwsCalls.call"), ("plugins/module_utils/aws.py", "AwsCalls.find"),
            ("plugins/module_utils/aws.py", "AwsCalls.paginate")}
# Called by the code, granted elsewhere (docs/iam/README.md says where).
EXEMPT = {"sts:AssumeRole": "only with assume_role_arn; granted to the identity that assumes the deploy role"}

# Third-party modules the deploy playbooks run: the actions the deploy's use of them needs, and the
# calls in their source the deploy never reaches (with why).
THIRD_PARTY = {
    "amazon.aws.autoscaling_group_info": {
        "uses": {"autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeLifecycleHooks",
                 "elasticloadbalancing:DescribeTargetGroups"},
        "unused": {},
    },
    # deploy-batch.yml and deploy-recover.yml: whether the instances of lost hosts were terminated.
    "amazon.aws.ec2_instance_info": {
        "uses": {"ec2:DescribeInstances"},
        "unused": {"ec2:DescribeInstanceAttribute": "only with include_attributes, which the deploy never sets"},
    },
}
# Reached by the app role only when an application is configured for them; their resources are the
# application's, so the statements to add are in docs/iam/README.md, not in the shared policy.
OUTSIDE_THE_POLICY = {
    "amazon.aws.s3_object": "app_artifact_source=s3: s3:GetObject on the artifact bucket",
    "amazon.aws.ssm_parameter": "app_ssm_parameters (lookup): ssm:GetParameters and kms:Decrypt on the app's secrets",
}
# What the deploy is about to call (capacity changes, lifecycle hooks, tagging the instances it puts
# in Standby): granted now so the wiring does not wait for a policy change.
FORTHCOMING = {
    "autoscaling:UpdateAutoScalingGroup", "autoscaling:DescribeLifecycleHooks", "autoscaling:CompleteLifecycleAction",
    "autoscaling:RecordLifecycleActionHeartbeat", "ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeInstances",
    # ec2fleet.fleet.asg_capacity (surge): removes the instances a surge added, through the group.
    "autoscaling:TerminateInstanceInAutoScalingGroup",
}
# Wildcards allowed in the policy: read-only families only.
READ_ONLY_WILDCARDS = {"autoscaling:Describe*", "elasticloadbalancing:Describe*"}

# The resources the deploy acts on, as ARNs: where an action supports resource-level permissions,
# the policy is checked on these, else on "*".
ACCOUNT = "eu-west-1:123456789012"
LOCK = f"arn:aws:ssm:{ACCOUNT}:parameter/sampleapp/prod/deploy-lock"
RELEASE = f"arn:aws:ssm:{ACCOUNT}:parameter/sampleapp/prod/release"
ASG = f"arn:aws:autoscaling:{ACCOUNT}:autoScalingGroup:8e4a3c2b-1d0f-4a5b-9c6d-7e8f9a0b1c2d:autoScalingGroupName/web"
TG = f"arn:aws:elasticloadbalancing:{ACCOUNT}:targetgroup/web/50dc6c495c0c9188"
INSTANCE = f"arn:aws:ec2:{ACCOUNT}:instance/i-0123456789abcdef0"
SCOPED = {
    "ssm:GetParameter": [LOCK], "ssm:PutParameter": [LOCK, RELEASE], "ssm:DeleteParameter": [LOCK, RELEASE],
    "ssm:GetParameterHistory": [LOCK, RELEASE],
    **{f"autoscaling:{name}": [ASG] for name in (
        "SuspendProcesses", "ResumeProcesses", "EnterStandby", "ExitStandby", "UpdateAutoScalingGroup",
        "TerminateInstanceInAutoScalingGroup", "CompleteLifecycleAction", "RecordLifecycleActionHeartbeat")},
    "elasticloadbalancing:RegisterTargets": [TG], "elasticloadbalancing:DeregisterTargets": [TG],
    "ec2:CreateTags": [INSTANCE], "ec2:DeleteTags": [INSTANCE],
}


def policy():
    return json.loads(POLICY_PATH.read_text())


# --- IAM evaluation (identity policy; conditions taken as met: they narrow resources, not actions) ---

def wildcard(pattern, value, case_sensitive):
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


def _listed(statement, key):
    value = statement.get(key, [])
    return [value] if isinstance(value, str) else list(value)


def _statement_applies(statement, action, resource):
    if "Action" in statement:
        hit = any(wildcard(p, action, case_sensitive=False) for p in _listed(statement, "Action"))
    else:
        hit = not any(wildcard(p, action, case_sensitive=False) for p in _listed(statement, "NotAction"))
    if "Resource" in statement:
        where = any(wildcard(p, resource, case_sensitive=True) for p in _listed(statement, "Resource"))
    else:
        where = not any(wildcard(p, resource, case_sensitive=True) for p in _listed(statement, "NotResource"))
    return hit and where


def decision(document, action, resource="*"):
    """``allow``, ``deny`` (an explicit Deny wins) or ``implicit-deny``."""
    statements = document["Statement"]
    statements = [statements] if isinstance(statements, dict) else statements
    allowed = False
    for statement in statements:
        if _statement_applies(statement, action, resource):
            if statement["Effect"] == "Deny":
                return "deny"
            allowed = True
    return "allow" if allowed else "implicit-deny"


def allowed(document, action):
    """Allowed on every resource the deploy uses it on (the ARNs above, else "*")."""
    return all(decision(document, action, resource) == "allow" for resource in SCOPED.get(action, ["*"]))


def test_the_evaluator_follows_iam_matching():
    doc = {"Statement": [
        {"Effect": "Allow", "Action": ["ssm:Get*", "ec2:Describe?nstances"], "Resource": "*"},
        {"Effect": "Allow", "Action": "autoscaling:*", "Resource": "arn:aws:autoscaling:*:*:autoScalingGroup:*"},
        {"Effect": "Deny", "Action": "ssm:GetParametersByPath", "Resource": "*"},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::bucket/*"},
    ]}
    assert decision(doc, "ssm:GetParameter") == "allow"
    assert decision(doc, "SSM:getparameter") == "allow"  # actions are case-insensitive
    assert decision(doc, "ssm:GetParametersByPath") == "deny"  # an explicit Deny wins
    assert decision(doc, "ssm:PutParameter") == "implicit-deny"
    assert decision(doc, "ec2:DescribeInstances") == "allow" and decision(doc, "ec2:DescribeXnstancesX") != "allow"
    assert decision(doc, "autoscaling:SuspendProcesses", ASG) == "allow"
    assert decision(doc, "autoscaling:SuspendProcesses", "*") == "implicit-deny"  # an ARN is not "*"
    assert decision(doc, "autoscaling:SuspendProcesses", ASG.replace("autoScalingGroup", "AUTOSCALINGGROUP")) \
        == "implicit-deny"  # resources are case-sensitive
    assert decision(doc, "s3:GetObject", "arn:aws:s3:::bucket/key") == "allow"
    assert decision(doc, "iam:PassRole", "arn:aws:s3:::bucket/key") == "implicit-deny"


# --- what the deploy calls, from the code ----------------------------------------------------------

@cache
def service_operations(service):
    """{python method name: API operation name} of one boto3 client."""
    model = botocore.session.get_session().get_service_model(service)
    return {botocore.xform_name(name): name for name in model.operation_names}


@cache
def waiter_operation(service, waiter):
    """The method name of the operation a waiter (``client.get_waiter("instance_running")``) polls."""
    model = botocore.session.get_session().get_waiter_model(service)
    return botocore.xform_name(model.get_waiter(_camel(waiter)).operation)


def _camel(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def action_of(service, operation):
    """IAM action of a boto3 call: the service prefix of the client, the API operation's name."""
    assert service in IAM_PREFIX, f"client {service!r}: add its IAM service prefix to IAM_PREFIX"
    operations = service_operations(service)
    assert operation in operations, f"{operation!r} is not an operation of boto3's {service} client"
    # The CamelCase of the method name, spelled as the API spells it (DescribeDBInstances, not ...Db...).
    assert operations[operation].lower() == _camel(operation).lower()
    return f"{IAM_PREFIX[service]}:{operations[operation]}"


def _literal(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class Calls(ast.NodeVisitor):
    """The AWS calls of one Python file: ``found`` {action: [where]}, ``dynamic`` [(file, qualname)]."""

    def __init__(self, path, rel):
        self.rel, self.scope = rel, []
        self.found, self.dynamic = {}, []
        self.tree = ast.parse(path.read_text(), filename=str(path))
        # Names (variables, self.<attr>) bound anywhere in the file to a client of one service.
        self.bound = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign):
                service = self._factory_service(node.value)
                for target in node.targets:
                    name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
                    if name and service:
                        self.bound[name] = service if self.bound.get(name, service) == service else "?"

    @staticmethod
    def _factory_service(node):
        """The service of ``<x>.client("svc")`` / ``clients("svc")``; "" when named at run time; None if no client."""
        if not isinstance(node, ast.Call) or not node.args:
            return None
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in CLIENT_FACTORIES:
            return None
        return _literal(node.args[0]) or ""

    def _client_service(self, node):
        service = self._factory_service(node)
        if service is not None:
            return service
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        service = self.bound.get(name)
        assert service != "?", f"{self.rel}: {name} holds clients of different services; name them apart"
        return service

    def _where(self, node):
        return f"{self.rel}:{node.lineno} {'.'.join(self.scope) or '<module>'}"

    def _record(self, service, operation, node):
        if not service or operation is None:
            self.dynamic.append((self.rel, ".".join(self.scope)))
            return
        self.found.setdefault(action_of(service, operation), []).append(self._where(node))

    def visit_ClassDef(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef

    def visit_Call(self, node):
        func = node.func
        if isinstance(func, ast.Attribute):
            service = self._client_service(func.value)
            if service is not None:  # a method of a client
                if func.attr == "get_paginator":
                    self._record(service, _literal(node.args[0]) if node.args else None, node)
                elif func.attr == "get_waiter":
                    waiter = _literal(node.args[0]) if node.args else None
                    operation = waiter_operation(service, waiter) if waiter and service else None
                    self._record(service, operation, node)
                elif func.attr not in CLIENT_HELPERS:
                    self._record(service, func.attr, node)
            elif func.attr in AWSCALLS_METHODS and len(node.args) >= 2:  # AwsCalls.call/find/paginate
                service = _literal(node.args[0])
                receiver = func.value.id if isinstance(func.value, ast.Name) else getattr(func.value, "attr", "")
                if service in IAM_PREFIX:
                    self._record(service, _literal(node.args[1]), node)
                elif receiver == "aws":
                    self.dynamic.append((self.rel, ".".join(self.scope)))
        elif isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
            service = self._client_service(node.args[0])
            if service is not None:
                self._record(service, _literal(node.args[1]), node)
        self.generic_visit(node)


def scan(path):
    calls = Calls(path, str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name)
    calls.visit(calls.tree)
    return calls


def utils_imported(path):
    """module_utils files a Python file imports (any form), as paths."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(UTILS_PACKAGE):
            rest = node.module[len(UTILS_PACKAGE):].lstrip(".")
            names.update([rest.split(".")[0]] if rest else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            names.update(a.name[len(UTILS_PACKAGE) + 1:].split(".")[0] for a in node.names
                         if a.name.startswith(UTILS_PACKAGE + "."))
    return {REPO / "plugins" / "module_utils" / f"{name}.py" for name in names}


@cache
def deploy_content():
    """The YAML the deploy playbooks run: the playbooks, what they import/include, the roles they use."""
    todo = [REPO / "playbooks" / name for name in PLAYBOOKS if (REPO / "playbooks" / name).is_file()]
    seen = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        text = path.read_text()
        for ref in re.findall(INCLUDE, text):
            candidates = [base / ref for base in (path.parent, REPO / "playbooks", REPO / "playbooks" / "tasks")]
            found = [c for c in candidates if c.is_file()]
            assert found, f"{path.relative_to(REPO)} includes {ref}, which is nowhere"
            todo.append(found[0].resolve())
        for name in re.findall(r"\bec2fleet\.fleet\.(\w+)", text):
            if (REPO / "roles" / name / "tasks").is_dir():
                todo.extend(sorted((REPO / "roles" / name / "tasks").glob("*.yml")))
    return tuple(seen)


def deploy_modules():
    names = set(DEPLOY_MODULES)
    for path in deploy_content():
        names.update(n for n in re.findall(r"\bec2fleet\.fleet\.(\w+)", path.read_text())
                     if (REPO / "plugins" / "modules" / f"{n}.py").is_file())
    return sorted(names)


def third_party_used():
    found = set()
    for path in deploy_content():
        found.update(f"{ns}.aws.{name}" for ns, name in
                     re.findall(r"(?<![/\w.])(amazon|community)\.aws\.(\w+)", path.read_text()))
    return found


@cache
def deploy_python():
    files = {REPO / "plugins" / "modules" / f"{name}.py" for name in deploy_modules()}
    files |= {REPO / rel for rel in ALSO_SCANNED}
    todo = list(files)
    while todo:
        for util in utils_imported(todo.pop()) - files:
            files.add(util)
            todo.append(util)
    return sorted(files)


@cache
def code_actions():
    found, dynamic = {}, []
    for path in deploy_python():
        calls = scan(path)
        for action, where in calls.found.items():
            found.setdefault(action, []).extend(where)
        dynamic.extend(calls.dynamic)
    return found, dynamic


def test_the_scan_covers_the_deploy():
    """The scope is what the playbooks run, not a list that can go stale."""
    rels = {str(p.relative_to(REPO)) for p in deploy_python()}
    assert {f"plugins/modules/{m}.py" for m in DEPLOY_MODULES} <= rels
    assert {"plugins/module_utils/aws.py", "plugins/module_utils/deploy.py", "plugins/inventory/ec2_fleet.py"} <= rels
    content = {str(p.relative_to(REPO)) for p in deploy_content()}
    assert {"playbooks/deploy.yml", "playbooks/rollback.yml", "roles/app/tasks/artifact.yml"} <= content
    found, _dynamic = code_actions()
    # The calls known today, so a scanner that silently finds nothing cannot pass.
    assert {"ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter", "ssm:GetParameterHistory",
            "autoscaling:SuspendProcesses", "autoscaling:ResumeProcesses", "autoscaling:EnterStandby",
            "autoscaling:ExitStandby", "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingInstances", "elasticloadbalancing:DescribeTargetHealth",
            "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
            "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes",
            "ec2:DescribeInstances", "ec2:DescribeRegions", "cloudwatch:GetMetricData", "sts:AssumeRole"} <= set(found)


def test_operations_are_named_at_run_time_only_in_the_client_layers_dispatch():
    """A call whose service or operation is not a literal cannot be checked against the policy."""
    _found, dynamic = code_actions()
    assert set(dynamic) == DISPATCH, "name the service and the operation literally: aws.call('ec2', 'op', ...)"


def test_the_policy_allows_every_call_the_deploy_code_makes():
    found, _dynamic = code_actions()
    document = policy()
    missing = {action: where for action, where in found.items()
               if action not in EXEMPT and not allowed(document, action)}
    assert not missing, "add these to docs/iam/deploy-policy.json (called at): " + json.dumps(missing, indent=1)
    assert set(EXEMPT) <= set(found), "an exemption for a call the code no longer makes"
    for action in EXEMPT:
        assert decision(document, action) != "allow"


def test_a_new_call_without_its_policy_line_is_caught(tmp_path):
    """What a contributor adding a call sees: the scan finds it and the policy does not allow it."""
    module = tmp_path / "new_module.py"
    module.write_text(
        "def run(aws, name):\n"
        "    aws.call('autoscaling', 'set_desired_capacity', 'resize', AutoScalingGroupName=name, DesiredCapacity=1)\n"
        "    aws.find('ssm', 'get_parameters_by_path', 'read', ('x',), Path='/')\n"
        "    ec2 = aws.client('ec2')\n"
        "    ec2.terminate_instances(InstanceIds=['i-1'])\n"
        "    for page in aws.client('elbv2').get_paginator('describe_listeners').paginate():\n"
        "        pass\n"
        "    aws.call('ec2', name, 'dynamic')\n"
    )
    calls = scan(module)
    assert set(calls.found) == {"autoscaling:SetDesiredCapacity", "ssm:GetParametersByPath", "ec2:TerminateInstances",
                                "elasticloadbalancing:DescribeListeners"}
    assert calls.dynamic == [("new_module.py", "run")]
    document = policy()
    assert [a for a in sorted(calls.found) if not allowed(document, a)] == [
        "autoscaling:SetDesiredCapacity", "ec2:TerminateInstances", "ssm:GetParametersByPath"]
    with pytest.raises(AssertionError, match="not an operation of boto3's ssm client"):
        action_of("ssm", "get_paramter")


# --- third-party modules ---------------------------------------------------------------------------

def plugin_source(name, kind="module"):
    """The file Ansible itself resolves for a plugin (the repo's ansible.cfg collections path)."""
    out = subprocess.run([str(BIN / "ansible-doc"), "-t", kind, "--json", name], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return Path(json.loads(out.stdout)[name]["doc"]["filename"])


def third_party_actions(path):
    """Every operation a third-party module's source may call: method and function names, paginator
    and waiter operations, matched against the operations of the clients it creates."""
    tree = ast.parse(path.read_text())
    services, names, operations = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "client" and node.args and _literal(node.args[0]):
                services.add(_literal(node.args[0]))
            elif name in ("get_paginator", "get_waiter") and node.args and _literal(node.args[0]):
                names.add(_literal(node.args[0]))
            elif name:
                names.add(name)
            for keyword in node.keywords:
                if keyword.arg == "operation" and _literal(keyword.value):
                    operations.add(_literal(keyword.value))
    found = set()
    for service in services:
        ops = service_operations(service)
        found |= {action_of(service, n) for n in names if n in ops}
        found |= {f"{IAM_PREFIX[service]}:{op}" for op in operations if op in ops.values()}
    return found


@pytest.mark.parametrize("module", sorted(THIRD_PARTY))
def test_third_party_modules_call_what_is_declared(module):
    declared = THIRD_PARTY[module]
    assert third_party_actions(plugin_source(module)) == declared["uses"] | set(declared["unused"])
    document = policy()
    assert [a for a in sorted(declared["uses"]) if not allowed(document, a)] == []


def test_every_third_party_aws_plugin_of_the_deploy_is_accounted_for():
    assert third_party_used() == set(THIRD_PARTY) | set(OUTSIDE_THE_POLICY), \
        "declare the AWS actions of a new amazon.aws/community.aws plugin the deploy uses"
    readme = (REPO / "docs" / "iam" / "README.md").read_text()
    for plugin in OUTSIDE_THE_POLICY:
        assert plugin in readme


# --- least privilege -------------------------------------------------------------------------------

def policy_actions():
    for statement in policy()["Statement"]:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        yield from ((statement["Sid"], action) for action in _listed(statement, "Action"))


def needed_actions():
    found, _dynamic = code_actions()
    needed = set(found) - set(EXEMPT) | FORTHCOMING
    for declared in THIRD_PARTY.values():
        needed |= declared["uses"]
    return needed


@cache
def iam_operations(prefix):
    services = [name for name, iam in IAM_PREFIX.items() if iam == prefix]
    return {f"{prefix}:{op}" for service in services for op in service_operations(service).values()}


def test_every_action_in_the_policy_exists():
    for sid, action in policy_actions():
        prefix = action.split(":", 1)[0]
        assert any(wildcard(action, real, case_sensitive=False) for real in iam_operations(prefix)), (sid, action)


def test_the_policy_grants_only_what_the_deploy_needs():
    needed = needed_actions()
    for sid, action in policy_actions():
        if "*" in action or "?" in action:
            assert action in READ_ONLY_WILDCARDS, f"{sid}: wildcard {action} beyond the read-only families"
            assert any(wildcard(action, n, case_sensitive=False) for n in needed), (sid, action)
        else:
            assert action in needed, f"{sid}: {action} is granted but nothing in the deploy calls it"
    for sid, _action in policy_actions():
        statement = next(s for s in policy()["Statement"] if s["Sid"] == sid)
        if statement["Resource"] == "*":
            # "*" only for actions AWS cannot scope (no resource-level permissions).
            assert not any(a in SCOPED for a in _listed(statement, "Action")), sid


@pytest.mark.parametrize(("action", "resource"), [
    ("ssm:GetParameter", f"arn:aws:ssm:{ACCOUNT}:parameter/sampleapp/prod/db-password"),
    ("ssm:PutParameter", f"arn:aws:ssm:{ACCOUNT}:parameter/sampleapp/prod/deploy-lock-other"),
    ("ssm:DeleteParameter", f"arn:aws:ssm:{ACCOUNT}:parameter/sampleapp/prod/db-password"),
    ("ssm:GetParameters", LOCK),
    ("ssm:GetParametersByPath", f"arn:aws:ssm:{ACCOUNT}:parameter/sampleapp/prod"),
    ("ssm:SendCommand", "*"),
    ("ec2:TerminateInstances", INSTANCE),
    ("ec2:StopInstances", INSTANCE),
    ("ec2:RunInstances", "*"),
    ("ec2:CreateTags", f"arn:aws:ec2:{ACCOUNT}:security-group/sg-0123456789abcdef0"),
    ("ec2:DescribeSecurityGroups", "*"),
    ("autoscaling:DeleteAutoScalingGroup", ASG),
    ("autoscaling:SetDesiredCapacity", ASG),
    ("autoscaling:DetachInstances", ASG),
    ("autoscaling:SuspendProcesses", "*"),
    ("elasticloadbalancing:DeleteTargetGroup", TG),
    ("elasticloadbalancing:ModifyTargetGroup", TG),
    ("elasticloadbalancing:RegisterTargets", f"arn:aws:elasticloadbalancing:{ACCOUNT}:loadbalancer/app/web/50dc6c49"),
    ("cloudwatch:PutMetricData", "*"),
    ("iam:PassRole", "*"),
    ("iam:CreateAccessKey", "*"),
    ("sts:AssumeRole", "*"),
    ("s3:GetObject", "arn:aws:s3:::artifacts/sampleapp-2.0.0.tar.gz"),
])
def test_the_policy_denies_what_the_deploy_does_not_do(action, resource):
    assert decision(policy(), action, resource) == "implicit-deny"


# --- (b) the emulator's IAM ------------------------------------------------------------------------

MALFORMED = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "GetParameter", "Resource": "*"}]}


@pytest.mark.emulator
def test_the_emulator_accepts_the_policy_document(aws):
    iam = boto3.client("iam")
    created = iam.create_policy(PolicyName="ec2fleet-deploy", PolicyDocument=POLICY_PATH.read_text(),
                                Description="ec2-fleet rolling deploy (docs/iam/deploy-policy.json)")["Policy"]
    stored = iam.get_policy_version(PolicyArn=created["Arn"], VersionId=created["DefaultVersionId"])
    assert stored["PolicyVersion"]["Document"] == policy()
    # The check means something: moto refuses a malformed document.
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        iam.create_policy(PolicyName="malformed", PolicyDocument=json.dumps(MALFORMED))
    assert refused.value.response["Error"]["Code"] == "MalformedPolicyDocument"


def _widened(document):
    """The same statements with every Resource "*", and CloudWatch's action also under moto's name."""
    widened = copy.deepcopy(document)
    for statement in widened["Statement"]:
        statement["Resource"] = "*"
        if "cloudwatch:GetMetricData" in _listed(statement, "Action"):
            statement["Action"] = [*_listed(statement, "Action"), "monitoring:GetMetricData"]
    return widened


class EnforcingEmulator:
    """A moto server of its own, started with INITIAL_NO_AUTH_ACTION_COUNT=3: the first three requests
    (an admin user, its inline policy, its access key) are free, every later one is authorized
    against the caller's IAM policies."""

    FREE_REQUESTS = 3

    def __init__(self):
        with pytest.MonkeyPatch.context() as env:
            env.setenv("INITIAL_NO_AUTH_ACTION_COUNT", str(self.FREE_REQUESTS))
            self.server = MotoServer().start()
        self.base = {"endpoint_url": self.server.endpoint_url, "region_name": "us-east-1"}
        bootstrap = boto3.client("iam", aws_access_key_id="AKIABOOTSTRAP", aws_secret_access_key="x", **self.base)
        bootstrap.create_user(UserName="admin")
        bootstrap.put_user_policy(UserName="admin", PolicyName="everything", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        self.admin = self._keys(bootstrap.create_access_key(UserName="admin"))
        self.users = {}

    def _keys(self, created):
        key = created["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def user(self, name, document):
        """A user holding only ``document`` (a managed policy, created and validated by moto)."""
        iam = self.client("iam", self.admin)
        iam.create_user(UserName=name)
        arn = iam.create_policy(PolicyName=f"{name}-policy", PolicyDocument=json.dumps(document))["Policy"]["Arn"]
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
        self.users[name] = self._keys(iam.create_access_key(UserName=name))
        return self.users[name]

    def client(self, service, keys):
        return boto3.client(service, **keys, **self.base)

    def fleet(self):
        """As admin: a group "web" of one instance and a target group "web", for calls that need them."""
        ec2, autoscaling = self.client("ec2", self.admin), self.client("autoscaling", self.admin)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24", AvailabilityZone="us-east-1a")
        ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": AMI,
                                                                                 "InstanceType": "t3.micro"})
        autoscaling.create_auto_scaling_group(AutoScalingGroupName="web", LaunchTemplate={"LaunchTemplateName": "web"},
                                              MinSize=0, MaxSize=3, DesiredCapacity=2,
                                              VPCZoneIdentifier=subnet["Subnet"]["SubnetId"])
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
        target_group = self.client("elbv2", self.admin).create_target_group(
            Name="web", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]
        return {"instances": [i["InstanceId"] for i in group["Instances"]], "target_group": target_group}

    def stop(self):
        self.server.stop()


@pytest.fixture(scope="module")
def enforcing():
    emulator = EnforcingEmulator()
    try:
        emulator.user("deploy", policy())
        emulator.user("deploy-widened", _widened(policy()))
        emulator.resources = emulator.fleet()
        yield emulator
    finally:
        emulator.stop()


def _now():
    return datetime.now(UTC)


METRIC_QUERY = {"MetricDataQueries": [{"Id": "requests", "MetricStat": {
    "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount"}, "Period": 60, "Stat": "Sum"}}]}
# (client, method, arguments from the emulated fleet: {"instances": [2 ids], "target_group": arn}).
UNSCOPED_CALLS = [
    ("autoscaling", "describe_auto_scaling_groups", lambda f: {"AutoScalingGroupNames": ["web"]}),
    ("autoscaling", "describe_auto_scaling_instances", lambda f: {"InstanceIds": f["instances"][:1]}),
    ("autoscaling", "describe_lifecycle_hooks", lambda f: {"AutoScalingGroupName": "web"}),
    ("elbv2", "describe_target_groups", lambda f: {}),
    ("elbv2", "describe_target_health", lambda f: {"TargetGroupArn": f["target_group"]}),
    ("ec2", "describe_instances", lambda f: {"InstanceIds": f["instances"]}),
    ("ec2", "describe_regions", lambda f: {"AllRegions": True}),
]
# Allowed by the policy on the ARNs the deploy uses them on.
SCOPED_CALLS = [
    ("ssm", "put_parameter", lambda f: {"Name": "/sampleapp/prod/deploy-lock", "Value": "{}", "Type": "String"}),
    ("ssm", "get_parameter", lambda f: {"Name": "/sampleapp/prod/deploy-lock"}),
    ("ssm", "put_parameter", lambda f: {"Name": "/sampleapp/prod/release", "Value": "2.0.0", "Type": "String",
                                        "Overwrite": True}),
    ("autoscaling", "suspend_processes", lambda f: {"AutoScalingGroupName": "web",
                                                    "ScalingProcesses": ["AZRebalance"]}),
    ("autoscaling", "enter_standby", lambda f: {"AutoScalingGroupName": "web", "InstanceIds": f["instances"][:1],
                                                "ShouldDecrementDesiredCapacity": True}),
    ("elbv2", "register_targets", lambda f: {"TargetGroupArn": f["target_group"],
                                             "Targets": [{"Id": f["instances"][1]}]}),
    ("ec2", "create_tags", lambda f: {"Resources": f["instances"][:1],
                                      "Tags": [{"Key": "ec2fleet:deploy", "Value": "standby"}]}),
]
OUTSIDE_CALLS = [
    ("ec2", "terminate_instances", lambda f: {"InstanceIds": f["instances"][:1]}),
    ("ec2", "describe_security_groups", lambda f: {}),
    ("autoscaling", "delete_auto_scaling_group", lambda f: {"AutoScalingGroupName": "web", "ForceDelete": True}),
    ("autoscaling", "set_desired_capacity", lambda f: {"AutoScalingGroupName": "web", "DesiredCapacity": 3}),
    ("elbv2", "delete_target_group", lambda f: {"TargetGroupArn": f["target_group"]}),
    ("ssm", "get_parameters_by_path", lambda f: {"Path": "/sampleapp"}),
    ("iam", "create_access_key", lambda f: {}),
]


def outcome(emulator, user, service, method, arguments):
    """None when the call succeeds, else the error as one line ("<code>: <message>")."""
    if callable(arguments):
        arguments = arguments(emulator.resources)
    try:
        getattr(emulator.client(service, emulator.users[user]), method)(**arguments)
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        return " ".join(f"{error.get('Code')}: {error.get('Message')}".split())
    return None


def denied(emulator, user, service, method, arguments):
    """The access-denied line, or None when the call got past authorization."""
    result = outcome(emulator, user, service, method, arguments)
    refused = result and (result.split(":")[0] in ACCESS_DENIED_CODES or "not authorized to perform" in result)
    return result if refused else None


def _ids(calls):
    return [f"{service}.{method}" for service, method, _arguments in calls]


@pytest.mark.emulator
@pytest.mark.parametrize(("service", "method", "arguments"), UNSCOPED_CALLS, ids=_ids(UNSCOPED_CALLS))
def test_enforced_the_policy_allows_the_deploys_calls(enforcing, service, method, arguments):
    assert outcome(enforcing, "deploy", service, method, arguments) is None


@pytest.mark.emulator
@pytest.mark.parametrize(("service", "method", "arguments"), OUTSIDE_CALLS, ids=_ids(OUTSIDE_CALLS))
def test_enforced_the_policy_denies_calls_outside_it(enforcing, service, method, arguments):
    message = denied(enforcing, "deploy", service, method, arguments)
    operation = service_operations(service)[method]
    assert message and f"is not authorized to perform: {IAM_PREFIX.get(service, service)}:{operation}" in message
    # Even with every resource widened to "*", the actions themselves are not granted.
    assert denied(enforcing, "deploy-widened", service, method, arguments)


@pytest.mark.emulator
@pytest.mark.parametrize(("service", "method", "arguments"), SCOPED_CALLS, ids=_ids(SCOPED_CALLS))
def test_enforced_scoped_statements_are_refused_by_moto_only_for_their_arn(enforcing, service, method, arguments):
    """moto authorizes these services against the resource "*" (moto/core/responses.py: call_action
    passes "*" unless the service defines _determine_resource, which only iam, sts and sqs do), so a
    statement scoped to an ARN never matches there. The same document with its resources widened
    lets the call through: the action part of each statement is right; the ARNs are checked by
    test_the_policy_allows_every_call_the_deploy_code_makes. When moto learns ARNs, the first assertion
    fails: then assert the shipped policy is let through instead."""
    action = action_of(service, method)
    assert allowed(policy(), action)
    assert denied(enforcing, "deploy", service, method, arguments)
    assert outcome(enforcing, "deploy-widened", service, method, arguments) is None


@pytest.mark.emulator
def test_enforced_cloudwatch_is_authorized_by_moto_under_its_signing_name(enforcing):
    """IAM's action is cloudwatch:GetMetricData; moto derives the action prefix from the SigV4 signing
    name in the request's credential scope, which for CloudWatch is "monitoring", so it asks for
    monitoring:GetMetricData, which no valid policy grants. The widened document also names that
    action and is let through, so the statement is otherwise right."""
    arguments = {**METRIC_QUERY, "StartTime": _now() - timedelta(hours=1), "EndTime": _now()}
    assert botocore.session.get_session().get_service_model("cloudwatch").signing_name == "monitoring"
    message = denied(enforcing, "deploy", "cloudwatch", "get_metric_data", arguments) or ""
    assert "is not authorized to perform: monitoring:GetMetricData" in message
    assert outcome(enforcing, "deploy-widened", "cloudwatch", "get_metric_data", arguments) is None


@pytest.mark.emulator
def test_enforced_an_unknown_key_is_refused(enforcing):
    """Enforcement is really on: a key the emulator never issued is refused outright."""
    stranger = {"aws_access_key_id": "AKIANOTISSUED0000000", "aws_secret_access_key": "x"}
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        enforcing.client("autoscaling", stranger).describe_auto_scaling_groups()
    assert refused.value.response["Error"]["Code"] in ("InvalidClientTokenId", "AuthFailure")
