"""``dato-dist ec2 list`` and ``dato-dist ec2 terminate NAME_OR_S3_PATH``.

EC2 tags are the registry of which instances are ours (flintrock's way): ``list`` shows
every cluster tagged ``dato-dist:cluster`` in a region; ``terminate`` ends one, found by
its S3 state path, by name in ``gl.deploy.environments``, or by its tag alone.
"""

import logging

log = logging.getLogger(__name__)


def _config(args):
    from .config import Ec2Config

    config = Ec2Config(args.region, endpoint_url=getattr(args, "endpoint_url", None))
    args.region = config.region  # None: the config key ec2.region
    return config


def cmd_list(args):
    """Print the dato-dist clusters of a region (from EC2 tags)."""
    from . import provision

    clusters = provision.find_clusters(_config(args))
    if not clusters:
        print(f"No dato-dist clusters in {args.region}.")
        return 0
    print(f"{'Name':<24} {'Hosts':>5}  {'States':<20} {'Owner':<28} S3 State Path")
    for name in sorted(clusters):
        c = clusters[name]
        states = sorted({i["state"] for i in c["instances"]})
        print(f"{name:<24} {len(c['instances']):>5}  {','.join(states):<20} "
              f"{c['owner'] or '-':<28} {c['s3_path'] or '-'}")
    return 0


def cmd_terminate(args):
    """Terminate a cluster: by S3 state path, by registered name, or by its EC2 tag."""
    from dato_dist.session import environments

    from . import provision
    from .cluster import Ec2Cluster, load

    target = args.cluster
    if target.startswith("s3://"):
        cluster = load(target)
    elif target in environments and isinstance(environments[target], Ec2Cluster):
        cluster = environments[target]
    else:
        config = _config(args)
        found = provision.find_clusters(config).get(target)
        if not found:
            print(f"No running dato-dist cluster named '{target}' in {args.region}.")
            return 3
        ids = [i["id"] for i in found["instances"]]
        if not args.yes and input(f"Terminate {len(ids)} instance(s) of '{target}'? [y/N] "
                                  ).strip().lower() != "y":
            return 1
        provision.terminate(config, ids)
        print(f"Terminated {', '.join(ids)}")
        return 0
    if not args.yes and input(f"Terminate cluster '{cluster.name}' ({cluster.num_hosts} "
                              "host(s))? [y/N] ").strip().lower() != "y":
        return 1
    cluster.stop()
    print(f"Cluster '{cluster.name}' terminated.")
    return 0


def add_parser(sub):
    """Add ``ec2 list|terminate`` to the ``dato-dist`` subcommands ``sub``."""
    ec2 = sub.add_parser("ec2", help="EC2 clusters: list, terminate")
    esub = ec2.add_subparsers(dest="action", required=True)
    for name, func, text in [("list", cmd_list, "list the dato-dist clusters of a region"),
                             ("terminate", cmd_terminate, "terminate a cluster")]:
        p = esub.add_parser(name, help=text)
        p.add_argument("--region", default=None, help="default: config key ec2.region")
        p.add_argument("--endpoint-url", default=None,
                       help="an EC2-compatible endpoint (tests: moto)")
        if name == "terminate":
            p.add_argument("cluster", help="S3 state path (s3://...) or cluster name")
            p.add_argument("-y", "--yes", action="store_true", help="do not ask")
        p.set_defaults(func=func)
    return ec2
