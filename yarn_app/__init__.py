"""The Hadoop YARN backend (Skein). See docs/hadoop-testing.md.

Installed as ``dato_dist.yarn_app`` (setup.cfg maps this folder there); importing it as a
top-level ``yarn_app`` (from the repository root) would load every module twice under two names.
"""

if __name__ != "dato_dist.yarn_app":
    raise ImportError(f"This folder is the package dato_dist.yarn_app; import it as "
                      f"'dato_dist.yarn_app', not as {__name__!r}.", name=__name__)
