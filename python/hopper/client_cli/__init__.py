"""The client half of the `hopper` command: bunqueue's CLI commands (push, pull, job …,
queue …, dlq …, cron …, stats, …) over bunqueue's TCP protocol, with its arguments,
output and exit codes, so scripts written for `bunqueue` work with `hopper`.

`routing` maps a command line to a protocol command (one module per command group),
`runner` sends it, `output`/`tables` render the reply."""
