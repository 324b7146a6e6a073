"""ec2fleet.fleet.release_record against the emulator: the record new instances install, its
history, and the release a rollback goes to (never a candidate whose rollout stopped)."""

from __future__ import annotations

import pytest
from ansible_collections.ec2fleet.fleet.plugins.modules.release_record import targets
from deploy_support import client, run_module

pytestmark = pytest.mark.emulator

ARGS = {"app": "sampleapp", "env": "prod"}


def record(state, version, run_id="r"):
    return run_module("ec2fleet.fleet.release_record", {**ARGS, "state": state, "version": version, "run_id": run_id})


def read():
    return run_module("ec2fleet.fleet.release_record", ARGS)


def test_nothing_recorded(aws):
    result = read()
    assert result["changed"] is False
    assert (result["version"], result["last_good"], result["rollback_target"]) == ("", "", "")


def test_rollback_undoes_a_finished_deploy(aws):
    record("deployed", "1.0.0")
    record("deployed", "2.0.0")
    result = read()
    assert (result["version"], result["last_good"], result["rollback_target"]) == ("2.0.0", "2.0.0", "1.0.0")
    value = client("ssm").get_parameter(Name="/sampleapp/prod/release")["Parameter"]["Value"]
    assert value == "2.0.0"  # what new instances install


def test_a_stopped_rollout_never_makes_its_candidate_the_target(aws):
    record("deployed", "1.0.0")
    record("deployed", "2.0.0")
    candidate = record("candidate", "3.0.0")
    assert candidate["changed"] and candidate["previous"] == "2.0.0"
    assert read()["version"] == "3.0.0"
    record("restored", "2.0.0")
    result = read()
    # The fleet may be mixed (a batch kept on 3.0.0): go to the last deployed release.
    assert (result["version"], result["last_good"], result["rollback_target"]) == ("2.0.0", "2.0.0", "2.0.0")
    assert [h["kind"] for h in result["history"]] == ["deployed", "deployed", "candidate", "restored"]


def test_the_first_rollout_stopped_leaves_no_record(aws):
    # Nothing was recorded before it: putting the record back is deleting the candidate.
    record("candidate", "1.0.0")
    checked = run_module("ec2fleet.fleet.release_record", {**ARGS, "state": "absent"}, check=True)
    assert checked["changed"] is True and read()["version"] == "1.0.0"
    gone = run_module("ec2fleet.fleet.release_record", {**ARGS, "state": "absent"})
    assert gone["changed"] is True and gone["version"] == ""
    assert (read()["version"], read()["history"]) == ("", [])
    assert run_module("ec2fleet.fleet.release_record", {**ARGS, "state": "absent"})["changed"] is False


def test_candidate_then_deployed_counts_once(aws):
    record("deployed", "1.0.0")
    record("candidate", "2.0.0")
    done = record("deployed", "2.0.0")
    assert done["changed"] is True  # same value, now marked deployed
    again = record("deployed", "2.0.0")
    assert again["changed"] is False
    assert read()["rollback_target"] == "1.0.0"


def test_check_mode_writes_nothing(aws):
    record("deployed", "1.0.0")
    result = run_module("ec2fleet.fleet.release_record", {**ARGS, "state": "deployed", "version": "2.0.0"}, check=True)
    assert result["changed"] and result["version"] == "2.0.0"
    assert read()["version"] == "1.0.0"


def test_records_written_before_the_module_count_as_deployed():
    history = [{"version": "1.0.0", "kind": "other"}, {"version": "2.0.0", "kind": "other"}]
    assert targets(history) == ("2.0.0", "1.0.0")
