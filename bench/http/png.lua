-- png.lua: wrk script posting real Fashion-MNIST test images to cigtd as
-- raw PNG body (Content-Type: image/png), one image per request.
-- Bodies come from request_bodies.py; see common.lua.
--   wrk -t2 -c64 -d5s --timeout 5s -s bench/http/png.lua http://127.0.0.1:8080 -- BODY_DIR
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua").setup{path = "/v1/classify", content_type = "image/png"}
