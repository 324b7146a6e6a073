"""ec2_fleet's accounts option against the emulator: several accounts through assumed roles (moto
keeps one backend per account and answers AssumeRole with credentials of the role's account), their
groups and hostvars, per-account regions and filters, colliding hostnames, one failing account in
both strict modes, the bounded pool over (account, region) pairs, and the cache key."""

from __future__ import annotations

import os

import inventory_fleet as fleet
import pytest
from ansible.errors import AnsibleError
from inventory_support import (
    CallCounter,
    DenyingEndpoint,
    PoolTracker,
    group_hosts,
    hostvars,
    inventory_list,
    parse_inventory,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.emulator

PAYMENTS, SEARCH, BROKEN = "111111111111", "222222222222", "333333333333"
DEFAULT_ACCOUNT = "123456789012"  # the emulator's account for the plain test credentials


@pytest.fixture
def two_accounts(aws):
    """payments: app-p1 (us-east-1, Env prod), app-p2 (us-east-1, Env dev), app-p3 (eu-west-1);
    search: app-s1 (us-east-1, Team search), app-s2 (eu-west-1); the default account: stray."""
    ids = {
        "app-p1": fleet.one_host(PAYMENTS, "us-east-1", "app-p1", {"Env": "prod"}),
        "app-p2": fleet.one_host(PAYMENTS, "us-east-1", "app-p2", {"Env": "dev"}, cidr="10.1.0.0/16"),
        "app-p3": fleet.one_host(PAYMENTS, "eu-west-1", "app-p3", {"Env": "prod"}),
        "app-s1": fleet.one_host(SEARCH, "us-east-1", "app-s1", {"Env": "prod", "Team": "search"}),
        "app-s2": fleet.one_host(SEARCH, "eu-west-1", "app-s2", {"Env": "prod", "Team": "other"}),
    }
    ids["stray"] = fleet.one_host(DEFAULT_ACCOUNT, "us-east-1", "stray", {"Env": "prod"})
    return ids


def accounts_config(*accounts, **options):
    return {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": ["us-east-1"], "accounts": list(accounts), **options}


PAYMENTS_ACCOUNT = {"alias": "payments", "assume_role_arn": fleet.role_arn(PAYMENTS), "regions": ["us-east-1", "eu-west-1"]}
SEARCH_ACCOUNT = {"assume_role_arn": fleet.role_arn(SEARCH), "regions": ["us-east-1", "eu-west-1"]}


def test_two_accounts_through_assumed_roles(two_accounts, tmp_path, monkeypatch):
    counter = CallCounter(monkeypatch)
    inventory, plugin = parse_inventory(write_config(tmp_path, accounts_config(PAYMENTS_ACCOUNT, SEARCH_ACCOUNT)))
    assert set(inventory.hosts) == {"app-p1", "app-p2", "app-p3", "app-s1", "app-s2"}  # not the default account's
    assert group_hosts(inventory, "account_payments") == ["app-p1", "app-p2", "app-p3"]
    # No alias: the group is named by the account id.
    assert group_hosts(inventory, f"account_{SEARCH}") == ["app-s1", "app-s2"]
    assert group_hosts(inventory, "region_eu_west_1") == ["app-p3", "app-s2"]
    p3, s1 = hostvars(inventory, "app-p3"), hostvars(inventory, "app-s1")
    assert (p3["ec2_account_id"], p3["ec2_account_alias"], p3["ec2_region"]) == (PAYMENTS, "payments", "eu-west-1")
    assert (s1["ec2_account_id"], s1["ec2_account_alias"]) == (SEARCH, None)
    assert p3["ec2_instance_id"] == two_accounts["app-p3"]
    # One AssumeRole per account, one DescribeInstances per (account, region) pair.
    assert counter.calls.count("AssumeRole") == 2
    assert counter.calls.count("DescribeInstances") == 4
    assert plugin._warnings == []


def test_single_account_files_are_unchanged_but_say_their_account(two_accounts, tmp_path):
    inventory, _ = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": ["us-east-1"]}))
    assert set(inventory.hosts) == {"stray"}
    assert not any(g.startswith("account_") for g in inventory.groups)
    stray = hostvars(inventory, "stray")
    assert (stray["ec2_account_id"], stray["ec2_account_alias"]) == (DEFAULT_ACCOUNT, None)
    role = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": ["us-east-1"], "assume_role_arn": fleet.role_arn(SEARCH)}
    inventory, _ = parse_inventory(write_config(tmp_path, role, name="role"))
    assert set(inventory.hosts) == {"app-s1"} and hostvars(inventory, "app-s1")["ec2_account_id"] == SEARCH


def test_regions_and_filters_per_account(two_accounts, tmp_path):
    config = accounts_config(
        {"alias": "payments", "assume_role_arn": fleet.role_arn(PAYMENTS)},  # the file's regions and filters
        {**SEARCH_ACCOUNT, "filters": {"tag:Team": "search"}},  # merged over the file's filters
        filters={"tag:Env": "prod"},
    )
    inventory, _ = parse_inventory(write_config(tmp_path, config))
    assert set(inventory.hosts) == {"app-p1", "app-s1"}
    # An account's filter wins over the file's for the same name.
    config["accounts"][0]["filters"] = {"tag:Env": "dev"}
    inventory, _ = parse_inventory(write_config(tmp_path, config, name="override"))
    assert set(inventory.hosts) == {"app-p2", "app-s1"}


def test_hostnames_colliding_across_accounts_stay_distinct(aws, tmp_path):
    first = fleet.one_host(PAYMENTS, "us-east-1", "web-0001")
    second = fleet.one_host(SEARCH, "us-east-1", "web-0001")
    earlier, later = sorted([first, second])
    config = accounts_config(PAYMENTS_ACCOUNT, {**SEARCH_ACCOUNT, "alias": "search"})
    inventory, plugin = parse_inventory(write_config(tmp_path, config))
    assert set(inventory.hosts) == {"web-0001", f"web-0001-{later}"}
    assert hostvars(inventory, "web-0001")["ec2_instance_id"] == earlier
    accounts = {hostvars(inventory, name)["ec2_account_alias"] for name in inventory.hosts}
    assert accounts == {"payments", "search"}
    assert any("web-0001" in w and later in w and "(account " in w for w in plugin._warnings)
    with pytest.raises(AnsibleError, match=r"hostname 'web-0001' of i-\w+ \(account \w+\) is already used by"):
        parse_inventory(write_config(tmp_path, {**config, "strict_hostnames": True}, name="strict"))


BROKEN_ACCOUNT = {"alias": "broken", "assume_role_arn": fleet.role_arn(BROKEN)}


def test_one_failing_account_strict(two_accounts, tmp_path):
    with DenyingEndpoint(os.environ["AWS_ENDPOINT_URL"], denied_services=(), denied_roles=[fleet.role_arn(BROKEN)]) as deny:
        config = accounts_config(PAYMENTS_ACCOUNT, BROKEN_ACCOUNT, SEARCH_ACCOUNT, endpoint_url=deny.url)
        with pytest.raises(AnsibleError) as err:
            parse_inventory(write_config(tmp_path, config))
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"ec2_fleet: account broken: cannot assume role {fleet.role_arn(BROKEN)} (region us-east-1")
        assert "access denied (AccessDenied" in message and "strict_accounts=true" in message
        proc = run_cli("ansible-inventory", "-i", str(write_config(tmp_path, config, name="cli")), "--list")
        assert proc.returncode != 0 and "account broken: cannot assume role" in proc.stderr


def test_one_failing_account_skipped_when_not_strict(two_accounts, tmp_path):
    # The second failure is of another kind: a profile that does not exist.
    ghost = {"alias": "ghost", "profile": "ghost"}
    with DenyingEndpoint(os.environ["AWS_ENDPOINT_URL"], denied_services=(), denied_roles=[fleet.role_arn(BROKEN)]) as deny:
        config = accounts_config(PAYMENTS_ACCOUNT, BROKEN_ACCOUNT, ghost, SEARCH_ACCOUNT, endpoint_url=deny.url,
                                 strict_accounts=False)
        inventory, plugin = parse_inventory(write_config(tmp_path, config))
        assert set(inventory.hosts) == {"app-p1", "app-p2", "app-p3", "app-s1", "app-s2"}
        assert "account_broken" not in inventory.groups
        skipped = [w for w in plugin._warnings if "skipping the account" in w]
        assert len(skipped) == 2
        assert skipped[0].startswith("ec2_fleet: account broken: cannot assume role") and "access denied" in skipped[0]
        assert skipped[1].startswith("ec2_fleet: account ghost: AWS profile 'ghost' not found")
        proc = run_cli("ansible-inventory", "-i", str(write_config(tmp_path, config, name="cli")), "--list")
        assert proc.returncode == 0, proc.stderr
        assert "account broken: cannot assume role" in proc.stderr
    # Strict, both failures are one line: the first account's, and how many more.
    config["strict_accounts"] = True
    with DenyingEndpoint(os.environ["AWS_ENDPOINT_URL"], denied_services=(), denied_roles=[fleet.role_arn(BROKEN)]) as deny:
        config["endpoint_url"] = deny.url
        with pytest.raises(AnsibleError, match=r"^ec2_fleet: account broken: .*\(1 more account\(s\) failed\)"):
            parse_inventory(write_config(tmp_path, config, name="strict"))


def test_account_failing_in_a_region_query_drops_the_whole_account(two_accounts, tmp_path):
    """An account whose region query fails is not half inventoried: all its hosts go, with one line."""
    with DenyingEndpoint(os.environ["AWS_ENDPOINT_URL"], denied_services=("autoscaling",)) as deny:
        config = accounts_config(PAYMENTS_ACCOUNT, {**SEARCH_ACCOUNT, "alias": "search"}, endpoint_url=deny.url,
                                 strict_accounts=False)
        inventory, plugin = parse_inventory(write_config(tmp_path, config))
    assert set(inventory.hosts) == set()
    lines = [w for w in plugin._warnings if "skipping the account" in w]
    assert [w.split(":")[1].strip() for w in lines] == ["account payments", "account search"]
    assert all("cannot query EC2 inventory" in w and "access denied" in w for w in lines)


def test_pairs_share_one_bounded_pool(two_accounts, tmp_path, monkeypatch):
    pool = PoolTracker(monkeypatch)
    regions = ["us-east-1", "eu-west-1", "us-west-2"]
    config = accounts_config({**PAYMENTS_ACCOUNT, "regions": regions}, {**SEARCH_ACCOUNT, "alias": "search", "regions": regions},
                             max_concurrency=2)
    parse_inventory(write_config(tmp_path, config))
    assert pool.peak == 2 and len(pool.pairs) == 6
    pool.reset()
    parse_inventory(write_config(tmp_path, {**config, "max_concurrency": 6}, name="wide"))
    assert pool.peak == 6  # every (account, region) pair at once: accounts are not queried one after the other
    assert sorted(pool.pairs) == sorted((alias, r) for alias in ("payments", "search") for r in regions)


def test_cache_is_keyed_by_every_account(two_accounts, tmp_path, monkeypatch):
    cache = {"cache": True, "cache_plugin": "jsonfile", "cache_connection": str(tmp_path / "cache")}
    path = write_config(tmp_path, accounts_config(PAYMENTS_ACCOUNT, SEARCH_ACCOUNT, **cache))
    counter = CallCounter(monkeypatch)
    cold, plugin = parse_inventory(path)
    key = plugin._fleet_cache_key(str(path))
    assert counter.calls.count("AssumeRole") == 2

    fleet.one_host(SEARCH, "us-east-1", "newcomer", cidr="10.9.0.0/16")
    counter.calls.clear()
    factories = counter.factories
    warm, _ = parse_inventory(path)
    assert counter.calls == [] and counter.factories == factories  # no role assumed, no client built
    assert set(warm.hosts) == set(cold.hosts) and "newcomer" not in warm.hosts
    assert hostvars(warm, "app-s1") == hostvars(cold, "app-s1")
    assert group_hosts(warm, "account_payments") == group_hosts(cold, "account_payments")

    # The same file read with other source credentials for the accounts' roles is another entry.
    credentials = tmp_path / "credentials"
    credentials.write_text("[other-source]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "other-source")
    counter.calls.clear()
    _, other_source = parse_inventory(path)
    assert counter.calls.count("AssumeRole") == 2
    assert [a.profile for a in other_source._accounts] == ["other-source", "other-source"]
    assert other_source._fleet_cache_key(str(path)) != key
    monkeypatch.delenv("AWS_PROFILE")
    # Every account's identity is in the key, not only the file's bytes.
    plugin._accounts[1].assume_role_arn = fleet.role_arn(BROKEN)
    assert plugin._fleet_cache_key(str(path)) != key
    plugin._accounts[1].assume_role_arn = fleet.role_arn(SEARCH)
    assert plugin._fleet_cache_key(str(path)) == key

    # Another set of accounts: a miss, answered by AWS.
    other = write_config(tmp_path, accounts_config(SEARCH_ACCOUNT, **cache), name="search-only")
    counter.calls.clear()
    inventory, _ = parse_inventory(other)
    assert counter.calls.count("AssumeRole") == 1 and "newcomer" in inventory.hosts


def test_cli_lists_accounts_and_warm_cache_matches(two_accounts, aws, tmp_path):
    config = accounts_config(PAYMENTS_ACCOUNT, SEARCH_ACCOUNT, cache=True, cache_plugin="ansible.builtin.jsonfile",
                             cache_connection=str(tmp_path / "cache"))
    path = write_config(tmp_path, config)
    first = inventory_list(path)
    assert sorted(first["account_payments"]["hosts"]) == ["app-p1", "app-p2", "app-p3"]
    aws.reset()
    assert inventory_list(path) == first


@pytest.mark.parametrize(
    ("accounts", "options", "expected"),
    [
        (["arn:aws:iam::111111111111:role/x"], {}, "option accounts, entry 1 must be a dict with assume_role_arn or profile"),
        ([{"role": "x"}], {}, "option accounts, entry 1 has unknown key(s) role; valid keys are: assume_role_arn, profile"),
        ([{"alias": "a"}], {}, "option accounts, entry 1 needs assume_role_arn or profile"),
        ([{"assume_role_arn": "arn:aws:iam::1234:role/x"}], {}, "is not a role ARN (arn:aws:iam::<12-digit account id>"),
        ([{"profile": "a", "regions": ["moon-1"]}], {}, "option accounts, entry 1: regions has invalid region name(s) moon-1"),
        ([{"profile": "a", "regions": "us-east-1"}], {}, "option accounts, entry 1: regions must be a list"),
        ([{"profile": "a", "filters": ["x"]}], {}, "option accounts, entry 1: filters must be a dict"),
        ([{"profile": "a", "alias": 7}], {}, "option accounts, entry 1: alias must be a non-empty string"),
        ([{"profile": "a", "alias": "Web-1"}, {"profile": "b", "alias": "web_1"}], {},
         "entry 2: alias 'web_1' gives the group account_web_1, as 'Web-1' does"),
        ([{"profile": "a"}, {"profile": "a"}], {}, "option accounts, entry 2 repeats the credentials of an earlier account"),
        ([{"profile": "a"}], {"assume_role_arn": "arn:aws:iam::111111111111:role/x"},
         "options accounts and assume_role_arn cannot be combined"),
        ([{"profile": "a"}], {"strict_accounts": "yes"}, "option strict_accounts must be true or false"),
    ],
)
def test_bad_accounts_are_one_clear_error(aws, tmp_path, accounts, options, expected):
    with pytest.raises(AnsibleError) as err:
        parse_inventory(write_config(tmp_path, accounts_config(*accounts, **options)))
    assert expected in str(err.value) and "\n" not in str(err.value)
