"""The host layer: the course's steps on one host over one Fabric Connection (no boto3 here).

In pyinfra's spirit, each step reads a tiny fact (one command, one parser in `lab.facts`), decides, and
changes the host only where the fact differs, so `--dry-run` and idempotency share one code path. A task
gathers all its facts in ONE remote command (`facts.gather`: a small script printing one section per
fact), so a re-run on a configured host costs one SSH connection and one command per task; the counts
are in the report (`HostReport.ssh`, JSON key `ssh`, printed with LAB_VERBOSE=1).

- `lab.connect`   wait for SSH (port, then banner), pinned host keys / known_hosts, one Connection
- `lab.remote`    `Host`: run, `sudo -n`, read/write files, record results
- `lab.result`    `StepResult` / `HostReport`: ok, changed, would change, pass, failed; text, table, JSON
- `lab.provision` steps 2-7 in order: `lab.waits`, `lab.mirror`, `lab.timezone`, `lab.vimrc`,
  `lab.packages`, work dir
- `lab.deploy`    deploy-echo: sha256 manifest, tar upload, make, service (systemd unit or supervisor)
- `lab.verify`    checks from this machine and on the host, each failure with its probable cause

`labctl.host_tasks` is the glue the Fabric tasks call.
"""
