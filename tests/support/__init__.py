"""What test modules share, imported as a library: helpers and constants, never tests.

`echo` (servers, clients, raw TCP), `sandbox` (sandbox hosts and marks), `faults` (interrupting a cloud
call), `local_sshd` (a private sshd and its HostTarget), `ssh_counts` (SSH connections and commands),
`fab` (running the real `fab` against a moto server), `classmode` (a class's students and what it owns).
Fixtures live in the conftest.py files.
"""
