"""The usage text of the client commands (`hopper <command> --help`)."""

from __future__ import annotations

HELP = """\
usage: hopper [global options] <command> [arguments]

Client commands: they talk to a running hopper (or bunqueue) server over the binary TCP
protocol, with the names, arguments, output and exit status of bunqueue's CLI.

Jobs:
  push <queue> <json> [options]     push a job; options: -P/--priority n, -d/--delay ms,
                                    --max-attempts n, --backoff ms, --ttl ms, --timeout ms,
                                    -u/--unique-key k, --job-id id, --depends-on id,id,
                                    --tags a,b, -g/--group-id g, --lifo,
                                    --remove-on-complete, --remove-on-fail
  pull <queue> [-t/--timeout ms]    take the next job (it stays active: ack or fail it)
  ack <id> [-r/--result json]       complete a job
  fail <id> [-e/--error text]       fail a job
  job get|state|result|cancel|promote|discard|logs <id>
  job progress <id> <0-100> [-m/--message text]
  job update <id> <json>            replace a job's data
  job priority <id> <n>             change a job's priority
  job delay <id> <ms>               move an active job to delayed
  job log <id> <text> [-l/--level info|warn|error]
  job wait <id> [-t/--timeout ms]   wait until the job is finished

Queues:
  queue list | pause|resume|drain|obliterate|count|paused <queue>
  queue clean <queue> -g/--grace ms [-s/--state s] [-l/--limit n]
  queue jobs <queue> [-s/--state s] [-l/--limit n] [-o/--offset n]
  dlq list <queue> [-c/--count n] | dlq retry <queue> [--id id] | dlq purge <queue>
  rate-limit set <queue> <n> | rate-limit clear <queue>
  concurrency set <queue> <n> | concurrency clear <queue>

Scheduling and workers:
  cron list | cron delete <name>
  cron add <name> -q/--queue q -d/--data json (-s/--schedule cron | -e/--every ms)
           [-P/--priority n] [--max-limit n] [-z/--timezone tz]
  worker list | worker register <name> -q q1,q2 | worker unregister <id>
  webhook list | webhook remove <id> | webhook enable|disable <id>
  webhook add <url> -e/--events e1,e2 [-q/--queue q] [-s/--secret s]

Monitoring:
  stats | health                    server statistics
  metrics                           Prometheus metrics text
  ping                              check the connection
  version                           client and server versions (the server's HTTP port
                                    is taken to be the TCP port + 1)

Global options (anywhere on the line):
  -H, --host <host>     server host (default localhost; env HOST, BUNQUEUE_HOST, BQ_HOST)
  -p, --port <port>     TCP port (default 6789; env TCP_PORT, BUNQUEUE_TCP_PORT, BQ_TCP_PORT)
  -t, --token <token>   auth token (env BQ_TOKEN, BUNQUEUE_TOKEN); after `pull` and
                        `job wait`, -t is their --timeout: use --token there
  --json                print the server's reply as JSON
  --help, --version

Exit status: 0 done, 1 the server refused or could not be reached, 2 bad arguments.
The server itself: `hopper serve --help`."""
