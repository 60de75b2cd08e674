-- common.lua: shared by the wrk scripts in this directory (native_json.lua, oip_json.lua,
-- oip_binary.lua, png.lua), which bench/run drives. Each of them calls setup{} with its path and
-- content type; the request bodies are real Fashion-MNIST test images written beforehand by
-- request_bodies.py into a directory holding index.txt (one line per body: FILE
-- [INFERENCE_HEADER_LENGTH]) and the files.
--
--   wrk -t2 -c64 -d5s --timeout 5s -s bench/http/native_json.lua http://127.0.0.1:8080 -- DIR
--
-- (oip_*.lua post to /v2/models/fashion_mnist/infer; pass another path after DIR for another
-- model name.)
--
-- Every thread pre-formats all requests once and cycles through them from its own offset, so
-- the hot path is one table lookup. done() prints one line, "WRK_JSON {...}", with the request
-- count, duration, errors and the latency percentiles (microseconds) from wrk's full histogram.

local M = {}

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function M.setup(opts)
  local reqs, n, k = {}, 0, 0
  local threads = 0

  -- Runs in the main Lua state once per thread before it starts: number the threads (the
  -- number becomes the global bench_thread of that thread's own Lua state).
  function setup(thread)
    thread:set("bench_thread", threads)
    threads = threads + 1
  end

  -- args: BODY_DIR [PATH] (PATH overrides the script's, e.g. another model's infer URL).
  function init(args)
    local dir, path = args[1], args[2] or opts.path
    if not dir then
      error("usage: wrk ... -s SCRIPT URL -- BODY_DIR [PATH]")
    end
    for line in io.lines(dir .. "/index.txt") do
      local file, hlen = line:match("^(%S+)%s*(%d*)")
      if file then
        local headers = {["Content-Type"] = opts.content_type}
        if hlen ~= "" then
          headers["Inference-Header-Content-Length"] = hlen
        end
        n = n + 1
        reqs[n] = wrk.format("POST", path, headers, read_file(dir .. "/" .. file))
      end
    end
    if n == 0 then
      error(dir .. "/index.txt lists no bodies")
    end
    k = ((rawget(_G, "bench_thread") or 0) * 7919) % n
  end

  function request()
    k = k % n + 1
    return reqs[k]
  end

  function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, ' ..
      '"p50": %d, "p90": %d, "p99": %d, "p99_9": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)))
  end
end

return M
