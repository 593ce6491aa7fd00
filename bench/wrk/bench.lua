-- wrk script of bench/run: prints one JSON line when done (req/s, p50 and p99 in ms, errors =
-- socket errors + non-2xx answers). With a file argument (`-- tokens.txt`, one token a line),
-- every request carries the next token of the file as `Authorization: Bearer` (each thread
-- starts at its own offset); the requests are built once in init so that the generator's cost
-- per request stays that of a fixed request.
local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("id", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

local reqs = nil
local idx = 1

function init(args)
  local file = args[1]
  if file == nil then return end
  reqs = {}
  for line in io.lines(file) do
    if #line > 0 then
      local h = {}
      for k, v in pairs(wrk.headers) do h[k] = v end
      h["Authorization"] = "Bearer " .. line
      table.insert(reqs, wrk.format(nil, nil, h))
    end
  end
  idx = (id * 7919) % #reqs + 1
end

function request()
  if reqs == nil then return wrk.format() end
  local r = reqs[idx]
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format('{"rps":%.1f,"p50_ms":%.4f,"p99_ms":%.4f,"errors":%d,"requests":%d}\n',
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors, summary.requests))
end
