#!/usr/bin/python
"""Ansible module: validate data against a JSON Schema file (run it on the controller)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: json_schema
short_description: Validate data against a JSON Schema before it is written anywhere
description:
  - Validates O(data) against the JSON Schema in O(schema) with the C(jsonschema) library, using
    the validator for the schema's own C($schema) draft (for example draft-04 for the Amazon
    CloudWatch agent's schema).
  - Fails listing every violation with its location in the data, so a bad role variable is
    reported before any configuration file is written. Never changes anything.
  - Run it where C(jsonschema) and the schema file are, usually the controller
    (with C(delegate_to) localhost).
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
options:
  data:
    description: The document to validate (a dict, list or scalar).
    type: raw
    required: true
  schema:
    description: Path of the JSON Schema file, on the host the module runs on.
    type: path
    required: true
  name:
    description: What the data is, used in the failure message.
    type: str
    default: document
requirements:
  - jsonschema
"""

EXAMPLES = r"""
- name: Validate the agent configuration against the agent's schema
  ec2fleet.fleet.json_schema:
    data: "{{ agent_config }}"
    schema: "{{ role_path }}/files/schema.json"
    name: CloudWatch agent configuration
  delegate_to: localhost
"""

RETURN = r"""
errors:
  description: The violations found, each as its location in the data, a colon and the message (empty when valid).
  returned: always
  type: list
  elements: str
  sample: ["logs.logs_collected.files.collect_list.0.retention_in_days: 42 is not one of [-1, 1, 3]"]
"""

import json
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

JSONSCHEMA_IMPORT_ERROR = None
try:
    import jsonschema
except ImportError:
    jsonschema = None
    JSONSCHEMA_IMPORT_ERROR = traceback.format_exc()


def violations(data, schema):
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    found = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        location = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        found.append(f"{location}: {error.message}")
    return found


def main():
    module = AnsibleModule(
        argument_spec={
            "data": {"type": "raw", "required": True},
            "schema": {"type": "path", "required": True},
            "name": {"type": "str", "default": "document"},
        },
        supports_check_mode=True,
    )
    if jsonschema is None:
        module.fail_json(msg=missing_required_lib("jsonschema"), exception=JSONSCHEMA_IMPORT_ERROR)
    data = module.params["data"]
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as err:
            module.fail_json(msg=f"{module.params['name']} is not valid JSON: {err}", errors=[str(err)])
    try:
        with open(module.params["schema"], encoding="utf-8") as handle:
            schema = json.load(handle)
    except (OSError, ValueError) as err:
        module.fail_json(msg=f"cannot load schema {module.params['schema']}: {err}", errors=[])
    try:
        errors = violations(data, schema)
    except jsonschema.exceptions.SchemaError as err:
        module.fail_json(msg=f"{module.params['schema']} is not a valid JSON Schema: {err.message}", errors=[])
    if errors:
        module.fail_json(
            msg=f"{module.params['name']} does not match {module.params['schema']}: " + "; ".join(errors),
            errors=errors,
        )
    module.exit_json(changed=False, errors=[])


if __name__ == "__main__":
    main()
