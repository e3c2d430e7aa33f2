// Pipelined WebSocket PUSH client for bench/server.py (alternative to its Python client):
//   bun bench/ws_push_client.ts <ws-url> <seconds> <window> <conns> <queue>
// Keeps <window> PUSH commands in flight per connection, counts {"ok":true} replies
// that arrive before the deadline (broadcast events, which carry no reqId, are skipped),
// and prints one JSON line. Bounded by time and by a 20M-command cap.
const [url, secsArg, windowArg, connsArg, queue] = process.argv.slice(2);
const secs = Number(secsArg ?? 10);
const window = Number(windowArg ?? 256);
const conns = Number(connsArg ?? 1);
const LIMIT = 20_000_000;
const payload = '{"to":"user@example.com","subject":"Welcome aboard!!!","template":"welcome-v2-2026","n":1}';
const prefix = `{"cmd":"PUSH","queue":"${queue ?? "qws"}","data":${payload},"reqId":`;
const stats = { ok: 0, bad: 0, events: 0, sent: 0, sample_bad: "" };
const lat: number[] = [];
const t0 = performance.now();
const deadline = t0 + secs * 1000;

function one(): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const sentAt = new Map<number, number>();
    let seq = 0;
    let stopping = false;
    const send = () => {
      sentAt.set(seq, performance.now());
      ws.send(prefix + seq + "}");
      seq++;
    };
    const finish = () => {
      stats.sent += seq;
      try { ws.close(); } catch {}
      resolve();
    };
    ws.onopen = () => {
      while (seq < window && seq < LIMIT) send();
      setTimeout(() => { stopping = true; setTimeout(finish, 5000); }, deadline - performance.now());
    };
    ws.onerror = (e) => reject(new Error("websocket error " + String(e)));
    ws.onmessage = (ev) => {
      const msg = String(ev.data);
      const i = msg.lastIndexOf('"reqId":');
      if (i < 0) { stats.events++; return; }
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

await Promise.all(Array.from({ length: conns }, one));
const dur = Math.min(performance.now(), deadline) - t0;
lat.sort((a, b) => a - b);
const pct = (p: number) => lat.length ? lat[Math.min(lat.length - 1, Math.max(0, Math.round(lat.length * p / 100) - 1))] * 1000 : null;
console.log(JSON.stringify({
  ...stats,
  duration_s: dur / 1000,
  rate: stats.ok / (dur / 1000),
  p50_us: pct(50),
  p99_us: pct(99),
  events_per_reply: stats.events / Math.max(1, stats.ok),
}));
process.exit(0);
