# -*- coding: utf-8 -*-
"""Documentation of the AWS connection options every fleet_* module takes.

One definition for all modules (``extends_documentation_fragment: [fleet_aws]``), next to the
one argument spec they share (``fleet_aws.AWS_ARGUMENT_SPEC`` in plugins/module_utils).
ansible.cfg's ``doc_fragment_plugins`` points ansible-doc and ansible-lint here.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  region:
    description: AWS region; default from the environment or profile (C(AWS_REGION)).
    type: str
    aliases: [aws_region]
  profile:
    description: Named AWS profile from the shared config/credentials files.
    type: str
    aliases: [aws_profile]
  endpoint_url:
    description: AWS API endpoint override (default C(AWS_ENDPOINT_URL), else AWS).
    type: str
    aliases: [aws_endpoint_url]
  assume_role_arn:
    description: IAM role to assume (through STS) before calling AWS.
    type: str
  retry_mode:
    description: botocore retry mode (throttling backs off instead of failing).
    type: str
    choices: [standard, adaptive, legacy]
    default: standard
  max_attempts:
    description: Maximum attempts per API call, retries included.
    type: int
    default: 10
requirements:
  - boto3
  - botocore
notes:
  - Every AWS client comes from the project's C(fleet_aws) module_utils (region, profile,
    assumed role, endpoint override, retries, one-line errors).
"""
