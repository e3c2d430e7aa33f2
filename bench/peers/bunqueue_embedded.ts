// Benchmark peer: bunqueue's in-process engine (the QueueManager that its own
// HTTP/TCP server wraps), used without any server or network hop.
//
// Run:  node_modules/.bin/bun bunqueue_embedded.ts
// Env (all optional, for quick runs):
//   PEER_JOBS      jobs pushed for the memory measurement   (default 1000000)
//   PEER_SINGLE    sequential single pushes                  (default 200000)
//   PEER_BATCH     jobs pushed via pushBatch(1000)           (default 200000)
//   PEER_PULLACK   pull+ack pairs                            (default 200000)
//   PEER_BATCH_SIZE batch size for the batched phase         (default 1000)
//
// Persistence: none. The QueueManager is created without `dataPath`, which is
// bunqueue's in-memory mode (no SQLite file, no write buffer).
//
// Prints progress to stderr and exactly one JSON line on stdout at the end.

import { QueueManager } from "bunqueue/queue";
import pkg from "bunqueue/package.json";

const env = (name: string, dflt: number): number => {
  const v = process.env[name];
  const n = v === undefined || v === "" ? dflt : Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number`);
  return Math.floor(n);
};

const MEM_JOBS = env("PEER_JOBS", 1_000_000);
const SINGLE = env("PEER_SINGLE", 200_000);
const BATCH = env("PEER_BATCH", 200_000);
const PULLACK = env("PEER_PULLACK", 200_000);
const BATCH_SIZE = env("PEER_BATCH_SIZE", 1000);

const log = (msg: string) => process.stderr.write(`[bunqueue peer] ${msg}\n`);

// ~90-byte JSON payload, distinct per job (as if freshly parsed from a request).
function payload(i: number) {
  const s = String(i).padStart(8, "0");
  return { user: `user-${s}`, email: `user${s}@example.com`, action: "welcome-email", n: i };
}
{
  const len = JSON.stringify(payload(12345678)).length;
  if (len < 80 || len > 100) throw new Error(`payload size ${len} is not ~90 bytes`);
}

function settle(): number {
  // Full collections a few times so RSS reflects live data only.
  for (let i = 0; i < 3; i++) Bun.gc(true);
  return process.memoryUsage().rss;
}

const opsPerSec = (n: number, ns: number) => Math.round(n / (ns / 1e9));

// Background timers are left at their defaults; none of them touch waiting jobs.
const newManager = () => new QueueManager({});

async function measureMemory(): Promise<number> {
  // Measured first, in a process that has not yet allocated any job, so the
  // RSS delta is not hidden by pages freed from earlier phases.
  const qm = newManager();
  // Warm the code paths on a different queue, then drop those jobs' memory.
  await qm.pushBatch("warmup", Array.from({ length: 1000 }, (_, i) => ({ data: payload(i) })));
  const before = settle();
  let pushed = 0;
  while (pushed < MEM_JOBS) {
    const n = Math.min(BATCH_SIZE, MEM_JOBS - pushed);
    const inputs = new Array(n);
    for (let k = 0; k < n; k++) inputs[k] = { data: payload(pushed + k) };
    await qm.pushBatch("mem", inputs);
    pushed += n;
  }
  const after = settle();
  const counts = qm.getStats();
  if (Number(counts.waiting) < MEM_JOBS) throw new Error(`expected ${MEM_JOBS} waiting, got ${counts.waiting}`);
  const perJob = Math.round((after - before) / MEM_JOBS);
  log(`memory: ${MEM_JOBS} waiting jobs, rss ${(before / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB, ${perJob} B/job`);
  qm.shutdown();
  return perJob;
}

async function measureSinglePush(): Promise<number> {
  const qm = newManager();
  for (let i = 0; i < 2000; i++) await qm.push("warm", { data: payload(i) });
  const t0 = Bun.nanoseconds();
  for (let i = 0; i < SINGLE; i++) await qm.push("single", { data: payload(i) });
  const dt = Bun.nanoseconds() - t0;
  const r = opsPerSec(SINGLE, dt);
  log(`single push: ${SINGLE} in ${(dt / 1e6).toFixed(0)} ms = ${r}/s`);
  qm.shutdown();
  return r;
}

async function measureBatchPush(): Promise<number> {
  const qm = newManager();
  await qm.pushBatch("warm", Array.from({ length: BATCH_SIZE }, (_, i) => ({ data: payload(i) })));
  // Build inputs inside the timed loop, like a server parsing a request body would.
  const t0 = Bun.nanoseconds();
  let pushed = 0;
  while (pushed < BATCH) {
    const n = Math.min(BATCH_SIZE, BATCH - pushed);
    const inputs = new Array(n);
    for (let k = 0; k < n; k++) inputs[k] = { data: payload(pushed + k) };
    await qm.pushBatch("batch", inputs);
    pushed += n;
  }
  const dt = Bun.nanoseconds() - t0;
  const r = opsPerSec(BATCH, dt);
  log(`batch push (${BATCH_SIZE}/batch): ${BATCH} in ${(dt / 1e6).toFixed(0)} ms = ${r}/s`);
  qm.shutdown();
  return r;
}

async function measurePullAck(): Promise<number> {
  const qm = newManager();
  // Fill the queue (untimed).
  for (let pushed = 0; pushed < PULLACK + 2000; ) {
    const n = Math.min(BATCH_SIZE, PULLACK + 2000 - pushed);
    await qm.pushBatch("work", Array.from({ length: n }, (_, k) => ({ data: payload(pushed + k) })));
    pushed += n;
  }
  for (let i = 0; i < 2000; i++) {
    const job = await qm.pull("work", 0);
    if (!job) throw new Error("queue drained during warm-up");
    await qm.ack(job.id, undefined);
  }
  const t0 = Bun.nanoseconds();
  for (let i = 0; i < PULLACK; i++) {
    const job = await qm.pull("work", 0);
    if (!job) throw new Error(`queue empty after ${i} pulls`);
    await qm.ack(job.id, undefined);
  }
  const dt = Bun.nanoseconds() - t0;
  const r = opsPerSec(PULLACK, dt);
  log(`pull+ack: ${PULLACK} in ${(dt / 1e6).toFixed(0)} ms = ${r}/s`);
  qm.shutdown();
  return r;
}

const bytesPerWaitingJob = await measureMemory();
settle();
const singlePush = await measureSinglePush();
settle();
const batchPush = await measureBatchPush();
settle();
const pullAck = await measurePullAck();

console.log(
  JSON.stringify({
    impl: "bunqueue",
    version: pkg.version,
    bun: Bun.version,
    mode: "embedded QueueManager, in-memory (no dataPath)",
    single_push_per_s: singlePush,
    batch_push_per_s: batchPush,
    pull_ack_per_s: pullAck,
    bytes_per_waiting_job: bytesPerWaitingJob,
  }),
);
process.exit(0);
