"""labctl's Fabric tasks: thin wrappers that map each option to labctl calls.

`fab` finds them through the checkout's fabfile.py, `labctl` (labctl.cli) through this module; run
`labctl --list` for the tasks and `labctl --help provision` for a task's options.
"""

from __future__ import annotations

import atexit
import gc
from typing import TYPE_CHECKING

from fabric import Connection

from labctl import statelock, taskargs
from labctl.errors import LabError
from labctl.output import reports_lab_errors
from labctl.taskargs import task

if TYPE_CHECKING:  # each task imports what it uses: `fab --list` and a host task stay light
    from labctl.options import ProvisionOptions


def freeze_startup() -> None:
    """For a command-line run: keep what start-up made (modules, classes) out of the garbage collector.

    A run is short and that start-up lives until exit, so the collector need not walk it again and again,
    nor walk everything at exit (~0.1 s CPU per process).
    """
    gc.freeze()
    atexit.register(gc.freeze)


_LAB_HELP = {
    "target": "aws or sandbox (default: $LAB_TARGET, the recorded target, aws if credentials, else sandbox)",
    "region": "AWS region (default: the recorded one, else ap-northeast-2)",
    "name": "lab name used in tags and resource names (default: the recorded one, else netlab)",
}
_PROVISION_HELP = {
    **_LAB_HELP,
    "instance-type": "EC2 instance type (default t3.micro: free-plan eligible)",
    "release": "Ubuntu release: 20.04 (default), 22.04 or 24.04",
    "ami": "use this AMI id instead of searching Canonical's images",
    "public-key": "import this OpenSSH public key instead of creating an ed25519 key pair",
    "ssh-cidr": "source CIDR for SSH, ICMP and port 12345 (default: your public IP /32 on AWS)",
    "open-world": "allow 0.0.0.0/0 as in the course (prints a warning)",
    "cloud-only": "stop after the cloud resources; never connect to the instance",
    "dry-run": "show what would be done and change nothing",
    "mirror": "apt mirror host to switch to (default mirror.kakao.com)",
    "trust-new-host": "-H hosts only: trust an unknown host key on first use, remember it in the state dir",
    "auto-stop": "HOURS until the instance stops itself (stop on shutdown + host shutdown); off cancels",
}
_CLASS_HELP = {
    "students": "class mode: one lab per student of this CSV (header id[,public_key][,cidr]); --name = class",
    "count": "class mode: one lab per student s01..sNN",
    "parallel": "class mode: students set up at once (default 10)",
    "shared-sg": "class mode: one security group for the class (union of the CIDRs) instead of one each",
    "all": "class mode: also redo students whose last verify passed",
}


def _cloud_options(
    *,
    target: str | None,
    region: str | None,
    name: str | None,
    instance_type: str | None,
    release: str | None,
    ami: str | None,
    public_key: str | None,
    ssh_cidr: str | None,
    open_world: bool,
    cloud_only: bool = False,
    dry_run: bool = False,
    auto_stop: float | None = None,
) -> ProvisionOptions:
    """The cloud options of provision and plan, one flag to one field; a flag not given (None) keeps the
    field's default, which means the recorded state or labctl's default.

    Class mode's --count (students) is not among them: it goes to labctl.classmode, never into
    ProvisionOptions.count (instances per lab).
    """
    from labctl.options import ProvisionOptions

    given = {
        "target": target,
        "region": region,
        "name": name,
        "instance_type": instance_type,
        "release": release,
        "ami": ami,
        "public_key": public_key,
        "ssh_cidr": ssh_cidr,
        "auto_stop": auto_stop,
    }
    return ProvisionOptions(
        **{field: value for field, value in given.items() if value is not None},
        open_world=open_world,
        cloud_only=cloud_only,
        dry_run=dry_run,
    )


@task(help={**_PROVISION_HELP, **_CLASS_HELP}, iterable=["ssh_cidr"])
@reports_lab_errors
def provision(
    c,
    target=None,
    region=None,
    name=None,
    instance_type=None,
    release=None,
    ami=None,
    public_key=None,
    ssh_cidr=None,
    open_world=False,
    cloud_only=False,
    dry_run=False,
    mirror=None,
    trust_new_host=False,
    auto_stop=None,
    students=None,
    count=None,
    parallel=None,
    shared_sg=False,
    all_=False,
):
    """Create or converge the lab: key pair, security group, Ubuntu instance, then the host setup."""
    from lab.provision import HostOptions
    from labctl import host_tasks
    from labctl.single.provisioning import provision  # this task's cloud part and host setup

    ssh_cidr = taskargs.one_value("ssh-cidr", ssh_cidr)
    taskargs.class_mode_only(students, count, parallel=parallel, shared_sg=shared_sg, all_=all_)
    # every option is checked before the lock, the sandbox daemon or the first creation (issue 12 item 6)
    host_options = HostOptions(**({"mirror": mirror} if mirror else {}), trust_new_host=trust_new_host)
    if isinstance(c, Connection):  # -H user@host: bring your own host, no cloud part
        if auto_stop is not None:
            raise LabError("--auto-stop needs a lab instance (aws or sandbox), not a -H host")
        statelock.hold(dry_run=dry_run)
        hosts, config = host_tasks.task_hosts(c)
        host_tasks.provision_hosts(hosts, host_options, dry_run, config=config)
        return
    run = provision
    if students or count:  # class mode: one lab per student (labctl.classmode)
        from labctl.classmode import classroom  # also --dry-run and --auto-stop, per student

        run = classroom.class_provision(students, count, parallel, shared_sg, all_)
    options = _cloud_options(
        target=target,
        region=region,
        name=name,
        instance_type=instance_type,
        release=release,
        ami=ami,
        public_key=public_key,
        ssh_cidr=ssh_cidr,
        open_world=open_world,
        cloud_only=cloud_only,
        dry_run=dry_run,
        auto_stop=auto_stop,
    )
    statelock.hold(dry_run=dry_run)  # one changing run per state dir; a second one waits (labctl.statelock)
    run(options, host_options=host_options)


_CLOUD_ONLY = ("cloud-only", "dry-run", "mirror", "trust-new-host", "auto-stop")


@task(help={k: v for k, v in _PROVISION_HELP.items() if k not in _CLOUD_ONLY}, iterable=["ssh_cidr"])
@reports_lab_errors
def plan(
    c,
    target=None,
    region=None,
    name=None,
    instance_type=None,
    release=None,
    ami=None,
    public_key=None,
    ssh_cidr=None,
    open_world=False,
):
    """Show what provision would create, change or start, without changing anything."""
    from labctl.single.provisioning import plan

    ssh_cidr = taskargs.one_value("ssh-cidr", ssh_cidr)
    options = _cloud_options(
        target=target,
        region=region,
        name=name,
        instance_type=instance_type,
        release=release,
        ami=ami,
        public_key=public_key,
        ssh_cidr=ssh_cidr,
        open_world=open_world,
    )
    plan(options)


@task(
    help={
        **_LAB_HELP,
        "json": "print JSON (stable keys, see infra/STATUS-JSON.md)",
        "warn-hours": "warn about instances running longer than this (default 8)",
    }
)
@reports_lab_errors
def status(c, target=None, region=None, name=None, json=False, warn_hours=None):
    """Show the lab's instances (uptime, auto-stop, how to connect), security group and key pair.

    Exits 1 when the lab's sandbox daemon is not running while its saved instances exist (it says what to do).
    """
    from labctl.status import status_data, status_lines

    data = status_data(target, region, name, warn_hours=warn_hours)
    if json:
        from json import dumps  # the task's own `json` flag takes the module's name

        print(dumps(data, indent=2, sort_keys=True))
    else:
        print("\n".join(status_lines(data)))
    if data.get("sandbox_down"):
        raise SystemExit(1)  # the lab is not reachable as it is, though it exists


@task(
    help={
        **_LAB_HELP,
        "keep-key": "keep the key pair and its private key file",
        "all-labs": "every lab of ours in the region (found by our tags): list them, then remove them all",
    }
)
@reports_lab_errors
def teardown(c, target=None, region=None, name=None, keep_key=False, all_labs=False):
    """Terminate the lab's instances and delete its security group and key pair."""
    statelock.hold()
    if all_labs:
        from labctl.all_labs import teardown_all_labs

        teardown_all_labs(target, region)
        return
    from labctl.teardown import teardown

    teardown(target, region, name, keep_key)


# --- host layer: deploy-echo and verify (labctl.host_tasks) -----------------------------------------------

_HOST_HELP = {
    "trust-new-host": "-H hosts only: trust an unknown host key on first use, remember it in the state dir",
}


@task(
    help={
        **_HOST_HELP,
        "server": "c (default) or python",
        "concurrent": "many clients at once (python --concurrent, or the C poll server)",
        "dry-run": "show what would be uploaded, built or restarted, and change nothing",
        "json": "print the results as JSON",
    }
)
@reports_lab_errors
def deploy_echo(c, server="c", concurrent=False, dry_run=False, json=False, trust_new_host=False):
    """Upload, build and run the echo server on 12345 (only what changed)."""
    from lab.provision import HostOptions
    from labctl import host_tasks

    host_tasks.server_choice(server, concurrent)  # a bad --server fails before the lock and any connection
    statelock.hold(dry_run=dry_run)
    hosts, config = host_tasks.task_hosts(c)
    host_tasks.deploy_echo(
        hosts,
        server,
        concurrent,
        dry_run,
        as_json=json,
        config=config,
        options=HostOptions(trust_new_host=trust_new_host),
    )


@task(help={**_HOST_HELP, "json": "print the checks as JSON"})
@reports_lab_errors
def verify(c, json=False, trust_new_host=False):
    """Check the lab from here and on the host: ping, echo round trips, clients, facts."""
    from lab.provision import HostOptions
    from labctl import host_tasks

    hosts, config = host_tasks.task_hosts(c)
    options = HostOptions(trust_new_host=trust_new_host)
    if not host_tasks.verify(hosts, json, config=config, options=options):
        raise SystemExit(1)


@task(
    help={
        **_HOST_HELP,
        "command": "run this one command and exit with its status (default: an interactive shell)",
        "instance": "which instance when the lab has several (instance id)",
    }
)
@reports_lab_errors
def ssh(c, command=None, instance=None, trust_new_host=False):
    """Log in to the lab instance as ubuntu (saved key, pinned host key), or run one --command."""
    from labctl import host_tasks, ssh_task

    hosts, config = host_tasks.task_hosts(c, connect_early_too=False)  # ssh_task opens its own
    status = ssh_task.ssh(hosts, command, instance, config=config, trust_new_host=trust_new_host)
    raise SystemExit(status)


@task(help={"instance": "the instance whose keys to forget (needed when several have pinned keys)"})
@reports_lab_errors
def forget_host_keys(c, instance=None):
    """Forget an instance's pinned SSH host keys, after checking its console shows the new key."""
    from labctl import targets

    print(targets.forget_host_keys(instance))
