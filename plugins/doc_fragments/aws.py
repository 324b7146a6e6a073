"""Documentation of the AWS connection options every module and the inventory plugin take.

One definition (``extends_documentation_fragment: [ec2fleet.fleet.aws]``), next to the one
argument spec the modules share (``AWS_ARGUMENT_SPEC`` in plugins/module_utils/aws.py), whose
defaults it states.
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
requirements:
  - boto3
  - botocore
notes:
  - Every AWS client comes from the collection's client layer (C(plugins/module_utils/aws.py)) (region, profile,
    assumed role, endpoint override, retries, one-line errors).
"""

    # Shared with the ec2_fleet inventory plugin: one retry policy and one set of defaults.
    RETRIES = r"""
options:
  retry_mode:
    description: botocore retry mode (throttling backs off instead of failing).
    type: str
    choices: [standard, adaptive, legacy]
    default: standard
  max_attempts:
    description: Maximum attempts per API call, retries included.
    type: int
    default: 10
"""
