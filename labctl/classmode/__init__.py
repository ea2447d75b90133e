"""Class mode: one lab per student (`fab provision --students FILE` or `--count N`), run in parallel.

`shared` holds the names every part uses (options, the run, student lab names, class tags); `classroom`
runs the class, `plan` its --dry-run, `autostop` its --auto-stop, `cancel` and `interrupt` Ctrl-C,
`status` its part of `fab status` / `fab teardown`, `report` the per-student report, `roster` the students,
`progress` the live lines.
"""
