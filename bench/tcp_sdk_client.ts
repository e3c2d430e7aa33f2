// Stock bunqueue SDK (bunqueue/client 2.9.5, TCP) load client for bench/tcp.py:
//   bun bench/tcp_sdk_client.ts <addbulk|add64|worker64> --port P [--jobs 100000]
//       [--bulk 1000] [--lanes 64] [--concurrency 64] [--host 127.0.0.1] [--timeout 120]
// The scenarios of docs §5.3 of the TCP protocol research, unchanged SDK defaults:
//   addbulk   sequential Queue.addBulk calls of --bulk jobs (one PUSHB each)
//   add64     --lanes concurrent awaited Queue.add calls (default autoBatch -> PUSHB)
//   worker64  Worker, concurrency --concurrency, trivial processor, on a queue prefilled
//             (untimed) with --jobs jobs through addBulk; timed from `new Worker` to the
//             --jobs-th "completed" event
// Payload {i, to, subject} (~50 bytes). Handshake with the driver as in
// tcp_raw_client.ts: READY -> "go" -> RESULT {json} -> "bye". After the timed phase the
// client reads the queue's counts (untimed) so a result can be checked, not just timed.
// Bounded: fixed job counts, and --timeout ends the process.
import { Queue, Worker } from "./peers/node_modules/bunqueue/dist/client/index.js";

const argv = process.argv.slice(2);
const mode = argv[0];
if (!["addbulk", "add64", "worker64"].includes(mode)) throw new Error(`unknown mode ${mode}`);
function opt(name: string, dflt: string): string {
  const i = argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
}
const N = Number(opt("jobs", "100000"));
const BULK = Number(opt("bulk", "1000"));
const LANES = Number(opt("lanes", "64"));
const CONCURRENCY = Number(opt("concurrency", "64"));
const TIMEOUT_S = Number(opt("timeout", "120"));
const connection = { host: opt("host", "127.0.0.1"), port: Number(opt("port", "6789")) };
const qname = `bench-${mode}-${Date.now()}`;
const payload = (i: number) => ({ i, to: "user@example.com", subject: "hello" });

const stdinLines = (console as any)[Symbol.asyncIterator]() as AsyncIterator<string>;
async function waitFor(word: string): Promise<void> {
  for (;;) {
    const { value, done } = await stdinLines.next();
    if (done || String(value).trim() === word) return;
  }
}

const stats = { ok: 0, bad: 0, sample_error: "" };
function bad(e: unknown): void {
  stats.bad++;
  if (!stats.sample_error) stats.sample_error = String(e instanceof Error ? e.message : e).slice(0, 500);
}
const hardTimer = setTimeout(() => {
  console.log("RESULT " + JSON.stringify({ error: `client timeout after ${TIMEOUT_S} s`, ...stats }));
  process.exit(2);
}, TIMEOUT_S * 1000);

async function fill(q: Queue): Promise<void> {
  for (let off = 0; off < N; off += BULK) {
    const jobs = Array.from({ length: Math.min(BULK, N - off) }, (_, k) => ({ name: "job", data: payload(off + k) }));
    try {
      const added = await q.addBulk(jobs);
      stats.ok += added.length;
    } catch (e) {
      bad(e);
    }
  }
}

/** Counts after the timed phase; for the worker, waits (bounded) until nothing is left
 *  waiting or active, since the SDK acks in batches after "completed" fires. */
async function countsAfter(q: Queue, settle: boolean): Promise<Record<string, unknown>> {
  const until = performance.now() + 5000;
  try {
    for (;;) {
      const c = (await q.getJobCounts()) as Record<string, number>;
      if (!settle || (c.waiting === 0 && c.active === 0) || performance.now() > until) return { counts_after: c };
      await Bun.sleep(50);
    }
  } catch (e) {
    // a server without GetJobCounts: the timing stands, the check is reported as unavailable
    return { counts_after: null, counts_error: String(e instanceof Error ? e.message : e).slice(0, 300) };
  }
}

const queue = new Queue(qname, { connection });
let worker: Worker | null = null;
let result: Record<string, unknown>;
if (mode === "worker64") {
  await fill(queue);
  if (stats.bad) throw new Error(`prefill failed: ${stats.sample_error}`);
  stats.ok = 0;
  console.log("READY");
  await waitFor("go");
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await new Promise<void>((resolve) => {
    const w = new Worker(qname, async (j) => j.data.i, { connection, concurrency: CONCURRENCY });
    worker = w;
    w.on("completed", () => { if (++stats.ok === N) resolve(); });
    w.on("failed", (_j, e) => { bad(e); if (stats.ok + stats.bad >= N) resolve(); });
    w.on("error", (e) => bad(e));
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  result = { seconds, rate: stats.ok / seconds, client_self_cpu_s: (cpu.user + cpu.system) / 1e6 };
  Object.assign(result, await countsAfter(queue, true));
} else {
  await queue.add("warmup", {}); // opens the pool before timing (as in the research script)
  console.log("READY");
  await waitFor("go");
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  if (mode === "addbulk") await fill(queue);
  else {
    let next = 0;
    await Promise.all(
      Array.from({ length: LANES }, async () => {
        for (let i = next++; i < N; i = next++) {
          try {
            await queue.add("job", payload(i));
            stats.ok++;
          } catch (e) {
            bad(e);
          }
        }
      }),
    );
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  result = { seconds, rate: stats.ok / seconds, client_self_cpu_s: (cpu.user + cpu.system) / 1e6 };
  Object.assign(result, await countsAfter(queue, false));
}
console.log(
  "RESULT " +
    JSON.stringify({
      mode,
      jobs: N,
      ...(mode === "addbulk" ? { bulk: BULK } : mode === "add64" ? { lanes: LANES } : { concurrency: CONCURRENCY }),
      ...result,
      ...stats,
    }),
);
clearTimeout(hardTimer);
const byeTimer = setTimeout(() => process.exit(0), 10_000);
await waitFor("bye");
clearTimeout(byeTimer);
const closing = Promise.all([(worker as Worker | null)?.close(), queue.close()]);
await Promise.race([closing, Bun.sleep(5000)]);
process.exit(0);
