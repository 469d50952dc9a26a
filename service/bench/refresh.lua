-- POST /refresh: each thread rotates its share of the refresh tokens of a file (one per line,
-- the first script argument; the second is the number of threads). Every answer carries the
-- successor, which goes back into the thread's queue: a token is presented once.
local threads = 0
function setup(thread)
    thread:set("id", threads)
    threads = threads + 1
end

local queue = {}
local head, tail = 1, 0

function init(args)
    local count = tonumber(args[2])
    local index = 0
    for line in io.lines(args[1]) do
        if index % count == id then
            tail = tail + 1
            queue[tail] = line
        end
        index = index + 1
    end
end

function request()
    local token = "none"
    if head <= tail then
        token = queue[head]
        queue[head] = nil
        head = head + 1
    end
    return wrk.format("POST", "/refresh", { ["Content-Type"] = "application/json" },
        '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
    local token = body:match('"refresh_token":"([^"]+)"')
    if token then
        tail = tail + 1
        queue[tail] = token
    end
end
