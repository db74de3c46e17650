-- PATCH /api/v1/posts/{id} by each post's author: `tokens`, `posts` ({id, author index}) are
-- prepended by the harness. A random new title makes every request a real change.
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(os.time() * 7919 + (offset or 0))
end

function request()
  local post = posts[math.random(#posts)]
  return wrk.format("PATCH", "/api/v1/posts/" .. post[1], {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[post[2]],
  }, '{"title":"Edited post ' .. math.random(1000000000) .. '"}')
end
