-- POST /api/v1/posts by signed-in users: `tokens` (one per client) and `body` are prepended
-- by the harness. Each thread starts at its own user and takes the users in turn.
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

local n = 0
function request()
  n = n + 1
  local token = tokens[((n + (offset or 0)) % #tokens) + 1]
  return wrk.format("POST", "/api/v1/posts", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
