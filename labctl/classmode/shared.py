"""What every part of class mode shares: the phases and verdicts, the class's options and run, names, tags.

Each student's lab is an ordinary lab named `<class>-<student>`, tagged in addition with the class (the lab
`--name`) and the student id, so `fab status` and `fab teardown` find the whole class by tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from infra import ami, cidr, operator_ip, preflight, security_group
from infra.errors import aws_errors
from infra.tags import CLASS_KEY, PROJECT_KEY, PROJECT_VALUE, STUDENT_KEY
from labctl.classmode.cancel import CancelScope
from labctl.classmode.roster import Student
from labctl.errors import LabError
from labctl.labref import LabRef, validate_lab_name

if TYPE_CHECKING:
    from lab.provision import HostOptions
    from labctl.options import ProvisionOptions
    from labctl.targets import Cloud

PHASES = ("cloud", "provision", "deploy", "verify")
DEFAULT_PARALLEL = 10  # a lab group at once; on AWS the work runs on the instances, here a thread each
MAX_PARALLEL = 64
PASS = "pass"
FAIL = "fail"
INTERRUPTED = "interrupted"
SHARED_SUFFIX = "--shared"  # student ids start with a letter or digit, so no student lab ends like this


@dataclass(frozen=True)
class ClassOptions:
    """What class mode adds to `fab provision`."""

    students: tuple[Student, ...]
    parallel: int = DEFAULT_PARALLEL
    shared_sg: bool = False
    redo_all: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.parallel <= MAX_PARALLEL:
            raise LabError(f"--parallel {self.parallel} is out of range: use 1 to {MAX_PARALLEL}")


@dataclass(frozen=True)
class ClassRun:
    """Everything the per-student pipelines share (read-only)."""

    ref: LabRef  # the class: its lab name is the class name
    cloud: Cloud
    image_id: str
    vpc_id: str
    operator_cidr: str
    instance_type: str
    public_key: str | None
    cloud_only: bool
    host_options: HostOptions
    shared_group_id: str | None = None
    auto_stop: float | None = None  # --auto-stop hours (autostop.OFF cancels), None when not asked
    subnet_id: str = ""  # issue 14: a default subnet that maps public IPs (infra.preflight)
    scope: CancelScope = field(default_factory=CancelScope)  # Ctrl-C (labctl.classmode.cancel)
    image: dict | None = None  # the described image of image_id (its root volume prices the dry run)


def student_lab(class_name: str, student_id: str) -> str:
    """The lab name of one student's lab, e.g. `netlab-s03` (checked like any lab name)."""
    lab = f"{class_name}-{student_id}"
    try:
        return validate_lab_name(lab)
    except LabError:
        raise LabError(
            f"student {student_id!r} of class {class_name!r} makes the lab name {lab!r}, longer than 40 "
            "characters: use a shorter --name or shorter student ids"
        ) from None


def shared_group_lab(class_name: str) -> str:
    return f"{class_name}{SHARED_SUFFIX}"


def class_tags(class_name: str, student_id: str | None = None) -> dict[str, str]:
    tags = {CLASS_KEY: class_name}
    if student_id:
        tags[STUDENT_KEY] = student_id
    return tags


def class_filters(class_name: str) -> list[dict]:
    """describe_* filters matching only resources labctl tagged as this class's."""
    return [
        {"Name": f"tag:{PROJECT_KEY}", "Values": [PROJECT_VALUE]},
        {"Name": f"tag:{CLASS_KEY}", "Values": [class_name]},
    ]


def class_inputs(
    ref: LabRef, options: ProvisionOptions, host_options: HostOptions, cloud: Cloud, out: TextIO
) -> ClassRun:
    """Check the inputs once (image, VPC, CIDR) on `cloud`; creates nothing (also used by the dry run)."""
    source = cidr.resolve_source_cidr(
        options.ssh_cidr, options.open_world, cloud.real_aws, lambda: operator_ip.operator_public_ip()
    )
    if source.warning:
        print(f"warning: {source.warning}", file=out, flush=True)
    with aws_errors():
        image = ami.find_ami(cloud.ec2, cloud.ssm, options.release, options.ami)
        vpc_id = security_group.default_vpc_id(cloud.ec2, ref.region)
        launch = preflight.launch_checks(
            cloud.ec2, ref.region, vpc_id, options.instance_type, image, options.release, True
        )
    for warning in launch.warnings:
        print(f"warning: {warning}", file=out, flush=True)
    return ClassRun(
        ref,
        cloud,
        image["ImageId"],
        vpc_id,
        source.cidr,
        options.instance_type,
        options.public_key,
        options.cloud_only,
        host_options.check(),
        auto_stop=options.auto_stop,
        subnet_id=launch.subnet_id,
        image=image,
    )
