-- Pull + ack pairs: GET /queues/<q>/jobs, then POST /jobs/<id>/ack with the id from the
-- response, repeat. Run with one connection per wrk thread (-t N -c N): a wrk thread's
-- Lua state is shared by its connections, so one connection per thread keeps the
-- GET -> ack chain and the pair timing exact. Pair latency (GET sent -> ack answered)
-- is measured here with CLOCK_MONOTONIC; wrk's own histogram mixes GETs and acks.
-- Env: BENCH_QUEUE (default q), BENCH_MAX_PAIRS (stop each thread after this many).

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
local C = dofile(here .. "common.lua")

local queue = os.getenv("BENCH_QUEUE") or "q"
local max_pairs = tonumber(os.getenv("BENCH_MAX_PAIRS") or "0")
local get_req -- built in init(): wrk.host (the Host header) is unset while loading
function init(args) get_req = wrk.format("GET", "/queues/" .. queue .. "/jobs") end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

pairs_done, empty, bad, non2xx = 0, 0, 0, 0
sample_bad = ""
hist = {}
local pending_id = nil -- id to ack next, nil = next request is a GET
local last = "get"
local t0 = 0

function request()
  if pending_id then
    last = "ack"
    local r = wrk.format("POST", "/jobs/" .. pending_id .. "/ack",
      { ["Content-Type"] = "application/json" }, "{}")
    pending_id = nil
    return r
  end
  if max_pairs > 0 and pairs_done >= max_pairs then wrk.thread:stop() end
  last = "get"
  t0 = C.now_us()
  return get_req
end

local function note_bad(status, body)
  bad = bad + 1
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
  if sample_bad == "" then sample_bad = last .. " " .. status .. " " .. body:sub(1, 200) end
end

function response(status, headers, body)
  if last == "get" then
    if status ~= 200 then return note_bad(status, body) end
    local id = body:match('[{,]"id":"([^"]+)"')
    if id then
      pending_id = id
    elseif body:find('"job":null', 1, true) then
      empty = empty + 1
    else
      note_bad(status, body)
    end
  else
    if status == 200 and body:find('"ok":true', 1, true) then
      pairs_done = pairs_done + 1
      local k = C.bucket(C.now_us() - t0)
      hist[k] = (hist[k] or 0) + 1
    else
      note_bad(status, body)
    end
  end
end

function done(summary, latency, requests)
  local merged = {}
  local tot = { pairs = 0, empty = 0, bad = 0, non2xx = 0, sample_bad = "" }
  for _, t in ipairs(threads) do
    tot.pairs = tot.pairs + t:get("pairs_done")
    tot.empty = tot.empty + t:get("empty")
    tot.bad = tot.bad + t:get("bad")
    tot.non2xx = tot.non2xx + t:get("non2xx")
    local s = t:get("sample_bad")
    if tot.sample_bad == "" and s ~= "" then tot.sample_bad = s end
    for k, c in pairs(t:get("hist")) do merged[k] = (merged[k] or 0) + c end
  end
  local secs = summary.duration / 1e6
  C.emit({
    duration_s = secs,
    requests = summary.requests,
    ok = tot.pairs,
    empty = tot.empty,
    bad = tot.bad,
    non2xx = tot.non2xx,
    sample_bad = tot.sample_bad,
    rate = tot.pairs / secs,
    req_rate = summary.requests / secs,
    errors = summary.errors,
    p50_us = C.percentile(merged, 50),
    p99_us = C.percentile(merged, 99),
    req_p50_us = latency:percentile(50),
    req_p99_us = latency:percentile(99),
  })
end
