"""The local fleet: emulated AWS (moto) + systemd containers as instances + a load balancer.

world.py      the AWS resources in the emulator (VPC, subnets, bastion, ASGs, target groups, ALB)
containers.py one container per running instance, linked by instance id (cloud-init stand-in)
balancer.py   HAProxy on 127.0.0.1 following the target groups and ASG lifecycle states
standins.py   what AWS does and moto lacks: drains (Standby, ASG terminations), initial health, tags
lbmetrics.py  the balancer's counters as an ALB's CloudWatch metrics
fleetd.py     the loop that keeps containers and the balancer in step with the emulator
state.py      where a fleet's state lives on disk, and its AWS clients
control.py    up / down / status, used by the Fabric tasks (fabfile.py)
"""
