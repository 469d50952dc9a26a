-- GET /me with the access tokens of a file (one per line, the first script argument), each
-- thread going round its own share.
local threads = 0
function setup(thread)
    thread:set("id", threads)
    threads = threads + 1
end

local tokens = {}
local next_token = 0

function init(args)
    for line in io.lines(args[1]) do
        tokens[#tokens + 1] = line
    end
    next_token = id
end

function request()
    next_token = next_token + 1
    local token = tokens[(next_token % #tokens) + 1]
    return wrk.format("GET", "/me", { ["Authorization"] = "Bearer " .. token })
end
