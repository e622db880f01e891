"""Reusable test infrastructure: local stand-ins for AWS and for EC2 hosts.

- :mod:`tests.infra.moto_server`: moto's server mode on 127.0.0.1 (EC2, S3, SSM, ...).
- :mod:`tests.infra.sshd`: real OpenSSH servers, one per loopback address, that play
  the EC2 hosts moto "launches" in a ``127.0.0.0/24`` subnet.

Everything binds to loopback only, every wait has a deadline, and every process
started here is stopped by its own pid.  See ``docs/ec2-testing.md``.
"""
