"""``dato-dist hadoop install|show|testcluster``: deploy and inspect dist folders.

Imports neither skein nor hdfs-native at load (``dato-dist --help`` works without the
``[yarn]`` extra); each command imports what it needs when it runs.
"""


def cmd_install(args):
    """Build the packed environment and install the dist folder at ``args.path``."""
    from . import dist

    config = dist.install(args.path, num_containers=args.num_containers,
                          container_size=args.container_size, num_vcores=args.num_vcores,
                          start_port=args.start_port, end_port=args.end_port,
                          python_prefix=args.python_prefix)
    print(dist.show(args.path))
    return 0 if config else 1


def cmd_show(args):
    """Print what is deployed in the dist folder at ``args.path``."""
    from . import dist

    print(dist.show(args.path))
    return 0


def cmd_testcluster(args):
    """Start, stop or show the local test cluster (YARN + HDFS on loopback)."""
    from . import minicluster

    return minicluster.main([args.test_action, "--dir", args.dir])


def add_parser(sub):
    """Add ``hadoop install|show|testcluster`` to the ``dato-dist`` subcommands ``sub``."""
    hadoop = sub.add_parser("hadoop", help="the Hadoop backend: deploy and inspect dist folders")
    hsub = hadoop.add_subparsers(dest="action", required=True)
    inst = hsub.add_parser("install", help="build and upload the dist folder (admins)")
    inst.add_argument("path", help="hdfs://namenode:port/path/to/dato-dist-folder")
    inst.add_argument("--num-containers", type=int)
    inst.add_argument("--container-size", type=int, help="MB per container")
    inst.add_argument("--num-vcores", type=int)
    inst.add_argument("--start-port", type=int)
    inst.add_argument("--end-port", type=int)
    inst.add_argument("--python-prefix", help="where Python lives on the cluster's nodes "
                                               "(default: this Python's prefix)")
    inst.set_defaults(func=cmd_install)
    show = hsub.add_parser("show", help="print what is deployed in a dist folder")
    show.add_argument("path")
    show.set_defaults(func=cmd_show)
    tc = hsub.add_parser("testcluster", help="a local test cluster (YARN + HDFS on "
                                             "loopback) to try the backend without Hadoop")
    tc.add_argument("test_action", choices=["start", "stop", "status"], metavar="ACTION",
                    help="start, stop or status")
    tc.add_argument("--dir", required=True, help="the test cluster's state folder")
    # Java and Maven Central jars, not the extra's modules: works without [yarn].
    tc.set_defaults(func=cmd_testcluster, backend=None)
    return hadoop
