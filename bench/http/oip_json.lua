-- oip_json.lua: wrk script posting real Fashion-MNIST test images to cigtd as
-- Open Inference Protocol JSON, inputs[0] UINT8 [N,1,28,28] with "data".
-- Bodies come from request_bodies.py; see common.lua.
--   wrk -t2 -c64 -d5s --timeout 5s -s bench/http/oip_json.lua http://127.0.0.1:8080 -- BODY_DIR
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua").setup{path = "/v2/models/fashion_mnist/infer",
                                   content_type = "application/json"}
