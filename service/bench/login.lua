-- POST /login round the users user0@load.test .. user{N-1}@load.test (N the first script
-- argument), all with the password of the second.
local threads = 0
function setup(thread)
    thread:set("id", threads)
    threads = threads + 1
end

local users, password, next_user = 0, "", 0

function init(args)
    users = tonumber(args[1])
    password = args[2]
    next_user = id * 7
end

function request()
    next_user = next_user + 1
    local body = '{"email":"user' .. (next_user % users) .. '@load.test","password":"'
        .. password .. '","device":"load"}'
    return wrk.format("POST", "/login", { ["Content-Type"] = "application/json" }, body)
end
