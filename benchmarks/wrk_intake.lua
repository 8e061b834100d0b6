-- wrk script: POST one pre-built form body per request, each thread walking its own share.
-- BODIES names a file of url-encoded bodies, one per line; COOKIE is the session cookie.
local bodies, threads, counter = {}, {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("BODIES")) do
    table.insert(bodies, line)
  end
  stride = tonumber(os.getenv("THREADS") or "1")
  next_index = id + 1
  headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = os.getenv("COOKIE") or ""}
  path = os.getenv("TARGET") or "/"
end

function request()
  local body = bodies[next_index] or bodies[#bodies]  -- past the end: repeats (a repeat form is answered, not stored)
  next_index = next_index + stride
  return wrk.format("POST", path, headers, body)
end
