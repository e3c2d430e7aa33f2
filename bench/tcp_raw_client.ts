// Raw bunqueue-TCP-protocol load client for bench/tcp.py (no SDK: our own framing, so
// the server, not the SDK's client-side queueing, is what a cell measures):
//   bun bench/tcp_raw_client.ts push --port P [--jobs 100000] [--conns 4] [--window 256]
//                                    [--host 127.0.0.1] [--queue q] [--timeout 120]
// Frames: 4-byte big-endian body length + one msgpack map (msgpackr's default `pack`,
// as the SDK and the bunqueue server use). Requests carry a string reqId, replies are
// matched by it (they may come back out of order).
//   push: <conns> connections, each keeping <window> PUSH frames in flight until its
//         share of <jobs> has been answered -> jobs/s = ok replies / seconds.
// (The PULLB/ACKB cell uses bench/tcp_pullb_client.py: decoding 100 job objects per
// PULLB took this client a whole core, so it, not the server, was the limit.)
// Handshake with the driver (stdin/stdout lines): the client prints READY when set up,
// starts timing when it reads "go", prints "RESULT {json}", and closes once it reads
// "bye" (or stdin ends), so the driver's CPU samples cover the timed phase only.
// Bounded: every connection has a fixed job count, and --timeout ends the process.
import { pack, unpack } from "./peers/node_modules/msgpackr/node-index.js";
import type { Socket } from "bun";

const argv = process.argv.slice(2);
const mode = argv[0];
if (mode !== "push") throw new Error(`mode must be push, got ${mode}`);
function opt(name: string, dflt: string): string {
  const i = argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
}
const HOST = opt("host", "127.0.0.1");
const PORT = Number(opt("port", "6789"));
const JOBS = Number(opt("jobs", "100000"));
const CONNS = Number(opt("conns", "4"));
const WINDOW = Number(opt("window", "256"));
const QUEUE = opt("queue", `bench-raw-${mode}-${Date.now()}`);
const TIMEOUT_S = Number(opt("timeout", "120"));

const payload = (i: number) => ({ i, to: "user@example.com", subject: "hello" });

// ------------------------------------------------------------------ framing

function frame(msg: unknown): Uint8Array {
  const body: Uint8Array = pack(msg);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, false); // big-endian
  out.set(body, 4);
  return out;
}

/** Splits a byte stream into frames (a frame may span chunks; a chunk may hold many). */
class FrameReader {
  private pending: Uint8Array | null = null;
  feed(chunk: Uint8Array, onFrame: (msg: any) => void): void {
    let buf = chunk;
    if (this.pending) {
      const joined = new Uint8Array(this.pending.length + chunk.length);
      joined.set(this.pending);
      joined.set(chunk, this.pending.length);
      buf = joined;
      this.pending = null;
    }
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let off = 0;
    while (buf.length - off >= 4) {
      const n = view.getUint32(off, false);
      if (buf.length - off - 4 < n) break;
      onFrame(unpack(buf.subarray(off + 4, off + 4 + n)));
      off += 4 + n;
    }
    if (off < buf.length) this.pending = buf.slice(off);
  }
}

/** One TCP connection: frames queued during a callback go out in one write (flush()),
 *  and what the kernel does not take is kept and written on `drain`. */
class Conn {
  private sock!: Socket<undefined>;
  private out: Uint8Array[] = [];
  private backlog: Uint8Array[] = [];
  private reader = new FrameReader();
  private nextReq = 1;
  private handlers = new Map<string, (msg: any) => void>();
  closed = false;
  events = 0;

  static async open(): Promise<Conn> {
    const c = new Conn();
    c.sock = await Bun.connect({
      hostname: HOST,
      port: PORT,
      socket: {
        data: (_s, chunk) => {
          c.reader.feed(chunk, (msg) => c.dispatch(msg));
          c.flush();
        },
        drain: () => c.drainBacklog(),
        close: () => { c.closed = true; },
        error: (_s, e) => { c.closed = true; console.error(`socket error: ${e}`); },
      },
    });
    c.sock.setNoDelay?.(true);
    return c;
  }

  /** Queues a request; `onReply` gets the reply with the same reqId. */
  request(msg: Record<string, unknown>, onReply: (msg: any) => void): void {
    const reqId = String(this.nextReq++);
    this.handlers.set(reqId, onReply);
    this.out.push(frame({ ...msg, reqId }));
  }

  call(msg: Record<string, unknown>): Promise<any> {
    return new Promise((resolve) => { this.request(msg, resolve); this.flush(); });
  }

  private dispatch(msg: any): void {
    if (msg && msg.type === "event") { this.events++; return; }
    const h = this.handlers.get(msg?.reqId);
    if (h === undefined) { console.error(`unmatched reply: ${JSON.stringify(msg).slice(0, 300)}`); return; }
    this.handlers.delete(msg.reqId);
    h(msg);
  }

  flush(): void {
    if (this.out.length === 0) return;
    let data: Uint8Array;
    if (this.out.length === 1) data = this.out[0];
    else {
      let len = 0;
      for (const f of this.out) len += f.length;
      data = new Uint8Array(len);
      let o = 0;
      for (const f of this.out) { data.set(f, o); o += f.length; }
    }
    this.out = [];
    if (this.backlog.length > 0) { this.backlog.push(data); return; }
    const n = this.sock.write(data);
    if (n < data.length) this.backlog.push(data.subarray(Math.max(0, n)));
  }

  private drainBacklog(): void {
    while (this.backlog.length > 0) {
      const data = this.backlog[0];
      const n = this.sock.write(data);
      if (n < data.length) { this.backlog[0] = data.subarray(Math.max(0, n)); return; }
      this.backlog.shift();
    }
  }

  end(): void { try { this.sock.end(); } catch {} }
}

// ------------------------------------------------------------------ driver handshake

const stdinLines = (console as any)[Symbol.asyncIterator]() as AsyncIterator<string>;
async function waitFor(word: string): Promise<void> {
  for (;;) {
    const { value, done } = await stdinLines.next();
    if (done || String(value).trim() === word) return;
  }
}

const stats = { ok: 0, bad: 0, sample_error: "" as string };
function bad(msg: any): void {
  stats.bad++;
  if (!stats.sample_error) stats.sample_error = JSON.stringify(msg).slice(0, 500);
}

const hardTimer = setTimeout(() => {
  console.log("RESULT " + JSON.stringify({ error: `client timeout after ${TIMEOUT_S} s`, ...stats }));
  process.exit(2);
}, TIMEOUT_S * 1000);

function pct(sorted: Float64Array, p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// ------------------------------------------------------------------ push

/** Times `work` (wall and this process's CPU), then reads the queue's counts back: the
 * result line's common fields, with what `work` returns added. */
async function timed(
  conns: Conn[],
  work: () => Promise<Record<string, unknown>>,
): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const extra = await work();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const counts = await conns[0].call({ cmd: "GetJobCounts", queue: QUEUE });
  return {
    ...(counts?.ok === true ? {} : { counts_error: JSON.stringify(counts).slice(0, 300) }),
    seconds,
    rate: stats.ok / seconds,
    client_self_cpu_s: (cpu.user + cpu.system) / 1e6,
    ...extra,
    counts_after: counts?.ok === true ? counts.counts : null,
  };
}

async function runPush(conns: Conn[]): Promise<Record<string, unknown>> {
  const lat = new Float64Array(JOBS); // µs, PUSH sent -> reply (includes waiting in the window)
  let nlat = 0;
  let i = 0; // job index across connections (payload `i`)
  const one = (c: Conn, share: number) =>
    new Promise<void>((resolve) => {
      let sent = 0;
      let answered = 0;
      if (share === 0) return resolve();
      const send = () => {
        const at = performance.now();
        sent++;
        c.request({ cmd: "PUSH", queue: QUEUE, data: payload(i++) }, (msg) => {
          lat[nlat++] = (performance.now() - at) * 1000;
          if (msg.ok === true && typeof msg.id === "string") stats.ok++;
          else bad(msg);
          answered++;
          if (sent < share) send();
          if (answered === share) resolve();
        });
      };
      while (sent < Math.min(WINDOW, share)) send();
      c.flush();
    });
  return timed(conns, async () => {
    await Promise.all(conns.map((c, k) => one(c, Math.floor(JOBS / CONNS) + (k < JOBS % CONNS ? 1 : 0))));
    const sorted = lat.subarray(0, nlat).sort();
    return { p50_us: pct(sorted, 50), p99_us: pct(sorted, 99) };
  });
}

// ------------------------------------------------------------------ main

const conns: Conn[] = [];
for (let k = 0; k < CONNS; k++) conns.push(await Conn.open());
const ping = await conns[0].call({ cmd: "Ping" });
if (ping.ok !== true) throw new Error(`Ping failed: ${JSON.stringify(ping)}`);
console.log("READY");
await waitFor("go");
const res = await runPush(conns);
const events = conns.reduce((s, c) => s + c.events, 0);
const closed = conns.filter((c) => c.closed).length;
console.log(
  "RESULT " +
    JSON.stringify({
      mode,
      jobs: JOBS,
      conns: CONNS,
      window: WINDOW,
      ...res,
      ...stats,
      events,
      closed_sockets: closed,
    }),
);
clearTimeout(hardTimer);
const byeTimer = setTimeout(() => process.exit(0), 10_000);
await waitFor("bye");
clearTimeout(byeTimer);
for (const c of conns) c.end();
process.exit(0);
