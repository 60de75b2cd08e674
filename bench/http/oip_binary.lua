-- oip_binary.lua: wrk script posting real Fashion-MNIST test images to cigtd as
-- Open Inference Protocol binary tensor extension (Triton's): a JSON header whose input has
-- parameters.binary_data_size, then the raw UINT8 pixels; the header's length goes in
-- Inference-Header-Content-Length.
-- Bodies come from request_bodies.py; see common.lua.
--   wrk -t2 -c64 -d5s --timeout 5s -s bench/http/oip_binary.lua http://127.0.0.1:8080 -- BODY_DIR
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua").setup{path = "/v2/models/fashion_mnist/infer",
                                   content_type = "application/octet-stream"}
