"""`hopper soak`: a property-based soak suite run against a live job server.

A hypothesis state machine (`machine.py`) drives a server over HTTP and WebSocket while
background producers and workers (`load.py`) keep it busy, injects faults (a worker that
dies mid-job, a dropped WebSocket, a SIGKILL and restart of a server it started itself:
`server.py`) and checks the invariants (`checks.py`) against what the server
acknowledged (`model.py`, `ledger.py`). `runner.py` ties them together; see docs/soak.md.
"""
