-- POST one push body per request (or a bulk body, see BENCH_BODY_FILE) on every
-- connection. Counts responses whose status is not 2xx or whose body lacks "ok":true.
-- Env: BENCH_PATH (default /queues/q/jobs), BENCH_BODY_FILE (JSON body; default a
-- ~90-byte push body), BENCH_PER_REQ (jobs per request, reported back; default 1),
-- BENCH_MAX_REQ (stop each thread after this many requests; default unbounded).

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
local C = dofile(here .. "common.lua")

local path = os.getenv("BENCH_PATH") or "/queues/q/jobs"
local body
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file then
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
else
  body = '{"data":{"to":"user@example.com","subject":"Welcome aboard!!!","template":"welcome-v2-2026","n":1}}'
end
local per_req = tonumber(os.getenv("BENCH_PER_REQ") or "1")
local max_req = tonumber(os.getenv("BENCH_MAX_REQ") or "0")

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

-- Built in init(): wrk.host (the Host header) is not known while the script loads.
local req
function init(args)
  req = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
end
sent, ok, bad, non2xx = 0, 0, 0, 0
sample_bad = ""

function request()
  sent = sent + 1
  if max_req > 0 and sent > max_req then wrk.thread:stop() end
  return req
end

function response(status, headers, rbody)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    bad = bad + 1
    if sample_bad == "" then sample_bad = status .. " " .. rbody:sub(1, 200) end
  elseif rbody:find('"ok":true', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if sample_bad == "" then sample_bad = status .. " " .. rbody:sub(1, 200) end
  end
end

function done(summary, latency, requests)
  local tot = { ok = 0, bad = 0, non2xx = 0, sample_bad = "" }
  for _, t in ipairs(threads) do
    tot.ok = tot.ok + t:get("ok")
    tot.bad = tot.bad + t:get("bad")
    tot.non2xx = tot.non2xx + t:get("non2xx")
    local s = t:get("sample_bad")
    if tot.sample_bad == "" and s ~= "" then tot.sample_bad = s end
  end
  local secs = summary.duration / 1e6
  C.emit({
    duration_s = secs,
    requests = summary.requests,
    ok = tot.ok,
    bad = tot.bad,
    non2xx = tot.non2xx,
    sample_bad = tot.sample_bad,
    per_req = per_req,
    rate = tot.ok * per_req / secs,
    req_rate = summary.requests / secs,
    errors = summary.errors,
    p50_us = latency:percentile(50),
    p99_us = latency:percentile(99),
    mean_us = latency.mean,
    max_us = latency.max,
  })
end
