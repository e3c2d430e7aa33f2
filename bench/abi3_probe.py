"""The abi3 question in instructions, not seconds: run under callgrind with the abi3 and
the version-specific build of the extension (bench/results/abi3/README.md)."""

import hopper

N = 20_000
e = hopper.Engine()
for i in range(N):
    e.push("q", {"n": i})
for _ in range(N):
    j = e.pull("q")
    assert j is not None
    e.ack(j.id, j.token, None)
