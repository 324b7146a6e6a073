"""Tooling around the ec2_fleet Ansible content: AWS emulator harness, local fleet, ops."""
