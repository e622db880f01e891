"""``Ec2Config``: how to reach AWS and what the cluster's instances look like.

GraphLab's parameters come first, with GraphLab's validation; ours are keyword-only.
The object validates itself at construction and never prints or serializes a secret.
"""

import ipaddress
import os

from dato_dist.errors import InvalidArgument, InvalidArgumentType

from . import aws, bootstrap

#: Host modules run at bootstrap, in this order, before the user's (see ec2/modules/).
DEFAULT_MODULES = ("python", "packages", "bootstrap")
IDLE_ACTIONS = ("shutdown", "terminate")


def _config_defaults():
    """The ``[ec2]`` section of the effective configuration (see conf/defaults.toml)."""
    from dato_dist.config import load

    cfg = load()
    out = {k: cfg[f"ec2.{k}"] for k in ("region", "instance_type", "ssh_user", "ssh_port",
                                         "remote_dir", "idle_action", "ssh_timeout",
                                         "log_sync_interval")}
    out["port_range"] = (cfg["ec2.start_port"], cfg["ec2.end_port"])
    return out


def _check_type(name, value, types, what):
    if value is not None and not isinstance(value, types):
        raise InvalidArgumentType(f"Ec2Config: {name} must be {what}, got {value!r}.")


def _str_list(name, value):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidArgumentType(f"Ec2Config: {name} must be a str or a list of str, "
                                  f"got {value!r}.")
    return list(value)


def _bid(name, value):
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentType(f"Ec2Config: {name} is a bid price in US dollars as a str "
                                  f"(e.g. '0.42'), got {value!r}.")
    try:
        price = float(value)
    except ValueError:
        price = None
    if price is None or not price > 0:
        raise InvalidArgument(f"Ec2Config: {name} must be a positive price like '0.42', "
                              f"got {value!r}.")
    return value


class Ec2Config:
    """How to launch and reach the EC2 instances of a cluster.

    Defaults not given here are the ``[ec2]`` keys of the configuration (shipped in
    ``conf/defaults.toml``; the user's config file and ``DATO_DIST_EC2_<KEY>`` override them).

    Parameters
    ----------
    region : str, optional
        AWS region, e.g. ``'us-west-2'`` (config key ``ec2.region``, shipped 'us-west-2').
    instance_type : str, optional
        Config key ``ec2.instance_type``, shipped 'm3.xlarge'.
    aws_access_key_id, aws_secret_access_key : str, optional
        Both or neither. Neither: ``gl.aws.set_credentials`` or boto3's credential chain.
    security_group : str, optional
        Name of the security group; created (SSH open only to ``cidr_ip``) when missing.
    tags : dict, optional
        Extra tags for every instance (the cluster name is the ``Name`` tag).
    cidr_ip : str or list of str, optional
        Who may SSH to the hosts; default: this machine's address (never 0.0.0.0/0).
    subnet_id, security_group_id : str, optional
    key_name, key_file : str, optional (keyword-only, ours)
        An existing EC2 key pair and its private key file. Neither: a key pair is made
        for the cluster and its private key kept under ``~/.dato_dist/ec2/keys`` (0600).
    ami : str, optional
        Default: the region's current Amazon Linux 2023 (resolved through SSM).
    use_private_ips : bool
        SSH to the hosts' private addresses (from inside the VPC, or in tests).
    ssh_user, ssh_port : str, int
    endpoint_url : str, optional
        An EC2/S3-compatible endpoint (tests: moto on 127.0.0.1).
    head_bid_price, worker_bid_price : str, optional
        Spot bid prices in US dollars, as strings (``'0.42'``); None: on-demand.
    iam_instance_profile : str, optional
        Name or ARN of the instances' IAM instance profile.
    host_python : str, optional
        Python on the hosts with dato_dist installed. None: bootstrap makes a venv with
        the client's dato_dist version.
    runners_per_host : int, optional
        Task runners per host; default one per CPU.
    remote_dir : str
        The hosts' folder for dato-dist files (one subfolder per instance id).
    port_range : (int, int)
        Ports the job drivers listen in (config keys ``ec2.start_port``, ``ec2.end_port``).
    modules, extra_modules : list of str
        Host module names (``ec2/modules/<name>``) and folders of the user's modules,
        each with optional ``init.sh``, ``setup.sh``, ``test.sh``, ``run.sh``.
    deploy_root_dir, variables_file : str, optional
        Files copied to every host; a shell file of variable overrides.
    bootstrap_cmds, bootstrap_python_packages : list of str
        Shell commands, and Python package files (globs), run/installed on every host.
    idle_action : {'shutdown', 'terminate'}
        How idle hosts end: ``shutdown`` (instance-initiated, no credentials on the hosts)
        or ``terminate`` through the EC2 API (needs credentials in the watchdog's memory).

    Examples
    --------
    >>> c = Ec2Config(aws_access_key_id='ABCDEFGH', aws_secret_access_key='s')  # doctest: +SKIP
    >>> print(c)                                                               # doctest: +SKIP
    [instance_type: m3.xlarge, region: us-west-2, aws_access_key: ABCD...]
    """

    def __init__(self, region=None, instance_type=None, aws_access_key_id=None,
                 aws_secret_access_key=None, security_group=None, tags=None, cidr_ip=None,
                 subnet_id=None, security_group_id=None, *, key_name=None, key_file=None,
                 ami=None, use_private_ips=False, ssh_user=None, ssh_port=None,
                 endpoint_url=None, head_bid_price=None, worker_bid_price=None,
                 iam_instance_profile=None, host_python=None, runners_per_host=None,
                 remote_dir=None, port_range=None, modules=DEFAULT_MODULES,
                 extra_modules=(), deploy_root_dir=None, variables_file=None,
                 bootstrap_cmds=(), bootstrap_python_packages=(), idle_action=None,
                 ssh_timeout=None, log_sync_interval=None):
        defaults = _config_defaults()
        region = defaults["region"] if region is None else region
        instance_type = defaults["instance_type"] if instance_type is None else instance_type
        ssh_user = defaults["ssh_user"] if ssh_user is None else ssh_user
        ssh_port = defaults["ssh_port"] if ssh_port is None else ssh_port
        remote_dir = defaults["remote_dir"] if remote_dir is None else remote_dir
        port_range = defaults["port_range"] if port_range is None else port_range
        idle_action = defaults["idle_action"] if idle_action is None else idle_action
        ssh_timeout = defaults["ssh_timeout"] if ssh_timeout is None else ssh_timeout
        log_sync_interval = (defaults["log_sync_interval"] if log_sync_interval is None
                             else log_sync_interval)
        for name, value in [("region", region), ("instance_type", instance_type),
                            ("aws_access_key_id", aws_access_key_id),
                            ("aws_secret_access_key", aws_secret_access_key),
                            ("security_group", security_group), ("subnet_id", subnet_id),
                            ("security_group_id", security_group_id), ("key_name", key_name),
                            ("ami", ami), ("ssh_user", ssh_user), ("endpoint_url", endpoint_url),
                            ("iam_instance_profile", iam_instance_profile),
                            ("host_python", host_python), ("remote_dir", remote_dir)]:
            _check_type(name, value, str, "a str")
        if security_group is not None and security_group_id is not None:
            raise InvalidArgument("Ec2Config: give security_group or security_group_id, "
                                  "not both.")
        if (aws_access_key_id is None) != (aws_secret_access_key is None):
            raise InvalidArgument("Ec2Config: give both aws_access_key_id and "
                                  "aws_secret_access_key, or neither (then "
                                  "gl.aws.set_credentials or boto3's credential chain is used).")
        if tags is not None and (not isinstance(tags, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in tags.items())):
            raise InvalidArgumentType(f"Ec2Config: tags must be a dict of str to str, "
                                      f"got {tags!r}.")
        cidrs = _str_list("cidr_ip", cidr_ip)
        for c in cidrs:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                raise InvalidArgument(f"Ec2Config: cidr_ip {c!r} is not an address range "
                                      "like '203.0.113.7/32'.") from None
        if key_file is not None:
            _check_type("key_file", key_file, (str, os.PathLike), "a path")
            key_file = os.path.expanduser(os.fspath(key_file))
        if key_file is not None and key_name is None:
            raise InvalidArgument("Ec2Config: key_file needs key_name (the EC2 key pair "
                                  "whose private key it is).")
        if not isinstance(ssh_port, int) or isinstance(ssh_port, bool) or not 0 < ssh_port < 65536:
            raise InvalidArgument(f"Ec2Config: ssh_port must be a port number, got {ssh_port!r}.")
        if runners_per_host is not None and (not isinstance(runners_per_host, int)
                                             or runners_per_host < 1):
            raise InvalidArgument("Ec2Config: runners_per_host must be a positive int.")
        try:
            lo, hi = (int(p) for p in port_range)
        except (TypeError, ValueError):
            lo = hi = 0
        if not 0 < lo <= hi < 65536:
            raise InvalidArgument(f"Ec2Config: port_range must be (start, end), got "
                                  f"{port_range!r}.")
        if idle_action not in IDLE_ACTIONS:
            raise InvalidArgument(f"Ec2Config: idle_action must be one of {IDLE_ACTIONS}.")
        modules = _str_list("modules", list(modules))
        extra_modules = [os.path.abspath(os.path.expanduser(p))
                         for p in _str_list("extra_modules", list(extra_modules))]
        # A missing module folder is found here, not half-way through a launch.
        bootstrap.module_dirs(modules, extra_modules)
        from . import provision  # boto3 lives there; imported when a config is made

        provision.check_region(region)

        self.region = region
        self.instance_type = instance_type
        self.aws_access_key_id = aws_access_key_id
        self._secret = aws_secret_access_key
        self.security_group = security_group
        self.tags = dict(tags or {})
        self.cidr_ip = cidrs
        self.subnet_id = subnet_id
        self.security_group_id = security_group_id
        self.key_name = key_name
        self.key_file = key_file
        self.ami = ami
        self.use_private_ips = bool(use_private_ips)
        self.ssh_user = ssh_user
        self.ssh_port = ssh_port
        self.endpoint_url = endpoint_url
        self.head_bid_price = _bid("head_bid_price", head_bid_price)
        self.worker_bid_price = _bid("worker_bid_price", worker_bid_price)
        self.iam_instance_profile = iam_instance_profile
        self.host_python = host_python
        self.runners_per_host = runners_per_host
        self.remote_dir = remote_dir
        self.port_range = (lo, hi)
        self.modules = modules
        self.extra_modules = extra_modules
        self.deploy_root_dir = deploy_root_dir
        self.variables_file = variables_file
        self.bootstrap_cmds = _str_list("bootstrap_cmds", list(bootstrap_cmds))
        self.bootstrap_python_packages = _str_list("bootstrap_python_packages",
                                                   list(bootstrap_python_packages))
        self.idle_action = idle_action
        self.ssh_timeout = float(ssh_timeout)
        self.log_sync_interval = float(log_sync_interval)

    # -- credentials ----------------------------------------------------------------------
    @property
    def aws_secret_access_key(self):
        return self._secret

    def get_credentials(self):
        """``{'aws_access_key_id': ..., 'aws_secret_access_key': ...}``: the keys given
        here, else ``gl.aws.set_credentials``'s, else boto3's chain (may be None)."""
        if self.aws_access_key_id:
            return {"aws_access_key_id": self.aws_access_key_id,
                    "aws_secret_access_key": self._secret}
        key, secret = aws.get_credentials()
        if key and secret:
            return {"aws_access_key_id": key, "aws_secret_access_key": secret}
        from . import provision

        return provision.chain_credentials(self)

    def _display_key(self):
        return self.aws_access_key_id or aws.get_credentials()[0]

    # -- persistence ----------------------------------------------------------------------
    _FIELDS = ("region", "instance_type", "security_group", "tags", "cidr_ip", "subnet_id",
               "security_group_id", "key_name", "key_file", "ami", "use_private_ips",
               "ssh_user", "ssh_port", "endpoint_url", "head_bid_price", "worker_bid_price",
               "iam_instance_profile", "host_python", "runners_per_host", "remote_dir",
               "port_range", "modules", "extra_modules", "deploy_root_dir", "variables_file",
               "bootstrap_cmds", "bootstrap_python_packages", "idle_action", "ssh_timeout",
               "log_sync_interval")

    def to_dict(self):
        """Everything but the credentials (safe to write to S3 and to logs)."""
        d = {k: getattr(self, k) for k in self._FIELDS}
        d["port_range"] = list(self.port_range)
        return d

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        region = data.pop("region")
        instance_type = data.pop("instance_type")
        known = {k: v for k, v in data.items() if k in cls._FIELDS}
        # A cluster reloaded elsewhere need not have the module folders it was launched
        # with: they are checked again before a launch (Ec2Cluster._launch).
        modules = known.pop("modules", DEFAULT_MODULES)
        extra_modules = known.pop("extra_modules", ())
        config = cls(region, instance_type, **known)
        config.modules = list(modules)
        config.extra_modules = list(extra_modules)
        return config

    def __eq__(self, other):
        return isinstance(other, Ec2Config) and other.to_dict() == self.to_dict()

    def __str__(self):
        return (f"[instance_type: {self.instance_type}, region: {self.region}, "
                f"aws_access_key: {aws.mask(self._display_key())}]")

    __repr__ = __str__
