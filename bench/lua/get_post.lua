-- GET /api/v1/posts/{id} of a random published post, anonymously: `ids` is prepended by the
-- harness. The same script drives Chronicle and the baseline server.
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(os.time() * 7919 + (offset or 0))
end

function request()
  return wrk.format("GET", "/api/v1/posts/" .. ids[math.random(#ids)])
end
