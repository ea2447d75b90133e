"""What `fab provision` adds: how to connect to each running instance, and auto-stop (when asked) last."""

from __future__ import annotations

from infra import instances
from lab.provision import ProvisionOptions as HostOptions
from labctl import autostop_task, connect_help
from labctl import state as lab_state
from labctl.output import Report


def finish_provision(
    options, described: list[dict], report: Report, host_options: HostOptions | None
) -> None:
    """Auto-stop (`options.auto_stop` hours) after the host setup; `options` is cloud_tasks'."""
    if getattr(options, "auto_stop", None) is not None:
        from labctl.cloud_tasks import resolve_lab

        ref = resolve_lab(options.target, options.region, options.name)
        autostop_task.apply_auto_stop(
            ref.target,
            ref.region,
            ref.lab,
            options.auto_stop,
            report,
            dry_run=options.dry_run,
            cloud_only=options.cloud_only,
            host_options=host_options,
        )


def print_connection_help(described: list[dict], report: Report) -> None:
    """The `fab ssh` / `ssh -i` / MobaXterm lines for every running instance (before the summary line)."""
    key_file = lab_state.load_state().get("key_file")
    running = [instances.summary(i) for i in described if instances.state_of(i) == "running"]
    for info in running:
        for line in connect_help.connection_lines(info["id"], info["public_ip"], key_file, len(running) > 1):
            report.line(line)
