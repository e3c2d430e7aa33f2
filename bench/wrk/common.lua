-- Shared helpers for the wrk scripts in this directory (loaded with dofile by each
-- script; every wrk thread runs its own Lua state, so each thread loads this too).

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } hopper_timespec;
  int clock_gettime(int clk_id, hopper_timespec *tp);
]]
local ts = ffi.new("hopper_timespec")

local M = {}

-- Monotonic clock in microseconds.
function M.now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

-- Histogram key: the value rounded down to 3 significant digits (<= 0.1 % error).
function M.bucket(us)
  if us < 1000 then return math.floor(us) end
  local step = 10 ^ (math.floor(math.log10(us)) - 2)
  return math.floor(us / step) * step
end

-- Percentile p (0..100) of a merged {value -> count} histogram.
function M.percentile(hist, p)
  local keys, total = {}, 0
  for k, c in pairs(hist) do keys[#keys + 1] = k; total = total + c end
  if total == 0 then return nil end
  table.sort(keys)
  local want, seen = math.max(1, math.ceil(total * p / 100)), 0
  for _, k in ipairs(keys) do
    seen = seen + hist[k]
    if seen >= want then return k end
  end
  return keys[#keys]
end

-- Minimal JSON encoder for flat/nested tables of numbers, strings, booleans.
function M.json(v)
  local t = type(v)
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = string.format("%q:%s", tostring(k), M.json(x)) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return string.format("%q", v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  end
  return "null"
end

-- The result line that bench/server.py parses from wrk's stdout.
function M.emit(tbl)
  io.write("WRKJSON " .. M.json(tbl) .. "\n")
end

return M
