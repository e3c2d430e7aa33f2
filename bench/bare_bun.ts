// Ceiling reference for bench/server.py on the Bun side: Bun.serve answering every
// request with the same fixed JSON as bench/bare_app.py, without reading the body, and
// on /ws answering every WebSocket message with the same fixed reply + its reqId.
//   bench/peers/node_modules/.bin/bun bench/bare_bun.ts <port>
const body = '{"ok":true,"id":"01a2078e-4ce9-7000-b186-b07f6cc824b0"}';
const WS_REPLY = '{"ok":true,"id":"01a2078e-4ce9-7000-b186-b07f6cc824b0","reqId":';
const port = Number(process.argv[2] ?? 8000);
Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    if (new URL(req.url).pathname.startsWith("/ws") && server.upgrade(req)) return;
    return new Response(body, { headers: { "content-type": "application/json" } });
  },
  websocket: {
    message(ws, message) {
      const text = String(message);
      const i = text.lastIndexOf('"reqId":');
      const rid = i >= 0 ? text.slice(i + 8, text.indexOf("}", i)) : "null";
      ws.send(WS_REPLY + rid + "}");
    },
  },
});
console.log(`bare bun listening on 127.0.0.1:${port}`);
