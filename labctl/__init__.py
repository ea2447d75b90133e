"""labctl: provision, configure and verify the network-programming echo lab (the orchestration layer).

Bottom to top, each module importing only those above it in this list:
- `errors`, `output`, `state` (`LabState`, the one typed state record), `options` (`ProvisionOptions`)
- `targets` (which cloud: `Cloud`, `connect`, host targets), `labref` (which lab: `LabRef`, `resolve_lab`)
- `host_tasks`, `ssh_task` (steps on hosts over one SSH connection each), `hostkeys`, `connect_help`,
  `interrupts`, `status_extras`
- `single/` (one lab: provision, plan, auto-stop), `classmode/` (one lab per student)
- `status`, `teardown`, `all_labs` (a lab and its class, found by tags)
- `tasks` (the Fabric tasks: each option mapped to its field), `cli` (the `labctl` console script)
"""

__version__ = "0.1.0"
