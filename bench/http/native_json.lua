-- native_json.lua: wrk script posting real Fashion-MNIST test images to cigtd as
-- native JSON, POST /v1/classify {"image": [784 ints]} (or {"images": [...]} for a batch).
-- Bodies come from request_bodies.py; see common.lua.
--   wrk -t2 -c64 -d5s --timeout 5s -s bench/http/native_json.lua http://127.0.0.1:8080 -- BODY_DIR
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua").setup{path = "/v1/classify", content_type = "application/json"}
