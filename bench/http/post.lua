-- post.lua: wrk script that POSTs real request bodies round-robin, each thread starting at a
-- different one.
--   wrk ... -s post.lua URL -- lines FILE [CONTENT_TYPE]   one body per line of FILE
--   wrk ... -s post.lua URL -- files DIR  [CONTENT_TYPE]   bodies DIR/NAME listed in
--        DIR/index.txt as "NAME HEADER_LENGTH" (HEADER_LENGTH > 0 adds the Open Inference
--        Protocol's Inference-Header-Content-Length header)
local reqs = {}
local i = 0
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("start", counter * 7919)
end

function init(args)
  local mode, src, ctype = args[1], args[2], args[3] or "application/json"
  local path = wrk.path
  if mode == "lines" then
    for line in io.lines(src) do
      reqs[#reqs + 1] = wrk.format("POST", path, {["Content-Type"] = ctype}, line)
    end
  else
    for line in io.lines(src .. "/index.txt") do
      local name, hl = line:match("^(%S+) (%d+)$")
      local f = assert(io.open(src .. "/" .. name, "rb"))
      local body = f:read("*a")
      f:close()
      local h = {["Content-Type"] = ctype}
      if tonumber(hl) > 0 then h["Inference-Header-Content-Length"] = hl end
      reqs[#reqs + 1] = wrk.format("POST", path, h, body)
    end
  end
  i = (start or 0) % #reqs
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
