// Ceiling reference for bench/server.py on the Bun side: Bun.serve answering every
// request with the same fixed JSON as bench/bare_app.py, and on /ws answering every
// WebSocket message with the same fixed reply + its reqId.
//   bench/peers/node_modules/.bin/bun bench/bare_bun.ts <port> [parse]
// With "parse" it first reads the whole body and parses it with JSON.parse (an empty body
// is not parsed; invalid JSON gets a 400) and takes the WS reqId from the parsed message,
// like bare_app.py --parse; without it, it answers without reading the body and finds the
// WS reqId by string search.
const body = '{"ok":true,"id":"01a2078e-4ce9-7000-b186-b07f6cc824b0"}';
const badBody = '{"ok":false,"error":"Invalid JSON"}';
const WS_REPLY = '{"ok":true,"id":"01a2078e-4ce9-7000-b186-b07f6cc824b0","reqId":';
const port = Number(process.argv[2] ?? 8000);
const parse = process.argv[3] === "parse";
const headers = { "content-type": "application/json" };

function reqIdBySearch(text: string): string {
  const i = text.lastIndexOf('"reqId":');
  return i >= 0 ? text.slice(i + 8, text.indexOf("}", i)) : "null";
}

function reqIdParsed(text: string): string {
  try {
    const msg = JSON.parse(text);
    return JSON.stringify(msg?.reqId ?? null);
  } catch {
    return "null";
  }
}

const reqId = parse ? reqIdParsed : reqIdBySearch;

async function parsed(req: Request): Promise<Response> {
  const text = await req.text();
  if (text) {
    try {
      JSON.parse(text);
    } catch {
      return new Response(badBody, { status: 400, headers });
    }
  }
  return new Response(body, { headers });
}

Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    if (new URL(req.url).pathname.startsWith("/ws") && server.upgrade(req)) return;
    if (parse) return parsed(req);
    return new Response(body, { headers });
  },
  websocket: {
    message(ws, message) {
      ws.send(WS_REPLY + reqId(String(message)) + "}");
    },
  },
});
console.log(`bare bun listening on 127.0.0.1:${port}${parse ? " (parse)" : ""}`);
