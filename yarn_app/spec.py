"""Our job and cluster -> a ``skein.ApplicationSpec``.

One application per job, named ``dato-dist:<job name>`` and tagged ``dato-dist`` and
``dato-dist-job-<id>`` so ``yarn application -list`` can be filtered to ours. The driver
runs as the application master's script (the application ends when the driver does); the
runners are the ``worker`` service, ``num_containers`` containers of ``container_size`` MB
and ``num_vcores`` vcores, restarted by YARN when one is lost.
"""

import shlex

JOB_TAG = "dato-dist"


def job_tag(job_id):
    return f"dato-dist-job-{job_id}"[:100].lower()


def application_spec(cluster, *, store_uri, job_id, job_name, dist_config, packages,
                     driver_memory, queue):
    """The Skein specification that runs job ``job_id`` on ``cluster``.

    No runner settings on the command lines: the driver sends them from the job's spec.
    """
    import skein

    archive = f"{cluster.dato_dist_path.rstrip('/')}/{dist_config['env_archive']}"
    # 'private': YARN keeps the unpacked archive in the user's cache on each node, so only
    # the first application on a node pays for unpacking it (the dominant start-up cost).
    files = {"env": skein.File(source=archive, type="archive", visibility="private")}
    env = {"PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1"}
    common = f"--store {shlex.quote(store_uri)} --job {shlex.quote(job_id)}"
    driver_script = (f"env/bin/python -m dato_dist.yarn_app.container driver {common} "
                     f"--start-port {cluster.start_port} --end-port {cluster.end_port}")
    worker_script = f"env/bin/python -m dato_dist.yarn_app.container worker {common}"
    if packages:
        worker_script += " --packages " + " ".join(shlex.quote(p) for p in packages)
    master = skein.Master(resources=skein.Resources(memory=driver_memory, vcores=1),
                          script=driver_script, files=files, env=env)
    worker = skein.Service(
        instances=cluster.num_containers,
        resources=skein.Resources(memory=cluster.container_size, vcores=cluster.num_vcores),
        script=worker_script, files=files, env=env,
        max_restarts=2 * cluster.num_containers, allow_failures=True)
    return skein.ApplicationSpec(name=f"dato-dist:{job_name}", queue=queue,
                                 tags={JOB_TAG, job_tag(job_id)}, master=master,
                                 services={"worker": worker}, max_attempts=1)
