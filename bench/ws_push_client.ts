// Pipelined WebSocket PUSH / PUSHB client for bench/server.py (alternative to its Python
// client):
//   bun bench/ws_push_client.ts <ws-url> <seconds> <window> <conns> <queue> [push|pushb] [batch]
// Keeps <window> commands in flight per connection (<conns> sockets on <ws-url>), counts
// {"ok":true} replies that arrive before the deadline (broadcast events, which carry no
// reqId, are counted and skipped), and prints one JSON line. Mode "push" (the default)
// sends {"cmd":"PUSH","queue":q,"data":{...},"reqId":n}; mode "pushb" sends
// {"cmd":"PUSHB","queue":q,"jobs":[{"data":{...}} x batch],"reqId":n} (batch default 100)
// and `rate` is then jobs/s (ok replies x batch; `reply_rate` is replies/s). Latency is per
// reply, command sent -> reply received. A socket the server closes before the client is
// done is counted in `closed_sockets`, with its close code and reason in `close_reasons`;
// the other sockets go on. Bounded by time and by a 20M-command cap.
const [url, secsArg, windowArg, connsArg, queue, modeArg, batchArg] = process.argv.slice(2);
const secs = Number(secsArg ?? 10);
const window = Number(windowArg ?? 256);
const conns = Number(connsArg ?? 1);
const mode = modeArg ?? "push";
const batch = mode === "pushb" ? Number(batchArg ?? 100) : 1;
if (mode !== "push" && mode !== "pushb") throw new Error(`unknown mode ${mode} (push|pushb)`);
const LIMIT = 20_000_000;
const DRAIN_MS = 5000;
const payload = '{"to":"user@example.com","subject":"Welcome aboard!!!","template":"welcome-v2-2026","n":1}';
const q = JSON.stringify(queue ?? "qws");
const prefix =
  mode === "push"
    ? `{"cmd":"PUSH","queue":${q},"data":${payload},"reqId":`
    : `{"cmd":"PUSHB","queue":${q},"jobs":[${Array(batch).fill(`{"data":${payload}}`).join(",")}],"reqId":`;
const stats = {
  ok: 0,
  bad: 0,
  events: 0, // events received at any time (measurement and drain)
  events_in_window: 0, // events received before the deadline
  sent: 0,
  sample_bad: "",
  closed_sockets: 0,
  close_reasons: [] as { socket: number; code: number; reason: string; at_s: number; opened: boolean }[],
  ws_errors: 0,
};
const lat: number[] = [];
const t0 = performance.now();
const deadline = t0 + secs * 1000;
let lastActive = t0; // when the last socket still pushing stopped (closes before the deadline)

function one(socket: number): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    const sentAt = new Map<number, number>();
    let seq = 0;
    let stopping = false;
    let opened = false;
    let done = false;
    const send = () => {
      sentAt.set(seq, performance.now());
      ws.send(prefix + seq + "}");
      seq++;
    };
    const finish = () => {
      if (done) return;
      done = true;
      stats.sent += seq;
      lastActive = Math.max(lastActive, Math.min(performance.now(), deadline));
      try { ws.close(); } catch {}
      resolve();
    };
    const timer = setTimeout(() => { stopping = true; setTimeout(finish, DRAIN_MS); }, deadline - performance.now());
    ws.onopen = () => {
      opened = true;
      while (seq < window && seq < LIMIT) send();
    };
    ws.onerror = () => { stats.ws_errors++; };
    ws.onclose = (ev) => {
      if (done) return;
      // closed by the server (or the network) before this client was done with it
      stats.closed_sockets++;
      stats.close_reasons.push({
        socket,
        code: ev.code,
        reason: String(ev.reason ?? ""),
        at_s: (performance.now() - t0) / 1000,
        opened,
      });
      clearTimeout(timer);
      finish();
    };
    ws.onmessage = (ev) => {
      const msg = String(ev.data);
      const i = msg.lastIndexOf('"reqId":');
      if (i < 0) {
        stats.events++;
        if (performance.now() <= deadline) stats.events_in_window++;
        return;
      }
      const rid = Number(msg.slice(i + 8, msg.indexOf("}", i)).replaceAll('"', ""));
      const t = sentAt.get(rid);
      if (t === undefined) { stats.bad++; return; }
      sentAt.delete(rid);
      const now = performance.now();
      if (now <= deadline && !stopping) {
        if (msg.includes('"ok":true')) { stats.ok++; lat.push(now - t); }
        else { stats.bad++; if (!stats.sample_bad) stats.sample_bad = msg.slice(0, 200); }
        if (seq < LIMIT) send();
      } else {
        stopping = true;
        if (sentAt.size === 0) finish();
      }
    };
  });
}

await Promise.all(Array.from({ length: conns }, (_, i) => one(i)));
// The rate is over the whole measurement window even if every socket was closed early.
const dur = secs * 1000;
lat.sort((a, b) => a - b);
const pct = (p: number) => lat.length ? lat[Math.min(lat.length - 1, Math.max(0, Math.round(lat.length * p / 100) - 1))] * 1000 : null;
console.log(JSON.stringify({
  ...stats,
  mode,
  batch,
  conns,
  window,
  url,
  duration_s: dur / 1000,
  active_s: (Math.min(lastActive, deadline) - t0) / 1000,
  rate: (stats.ok * batch) / (dur / 1000),
  reply_rate: stats.ok / (dur / 1000),
  event_rate: stats.events_in_window / (dur / 1000),
  p50_us: pct(50),
  p99_us: pct(99),
  events_per_reply: stats.events / Math.max(1, stats.ok),
}));
process.exit(0);
