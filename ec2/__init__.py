"""The EC2 backend (boto3 + Fabric). See docs/ec2.md.

Installed as ``dato_dist.ec2`` (setup.cfg maps this folder there); importing it as a
top-level ``ec2`` (from the repository root) would load every module twice under two names.
"""

if __name__ != "dato_dist.ec2":
    raise ImportError(f"This folder is the package dato_dist.ec2; import it as "
                      f"'dato_dist.ec2', not as {__name__!r}.", name=__name__)
