"""The read-only Lua script that returns only the routing end of unacked entries, and how it is run.

Used in the "scripts" read mode (redis_broker.py), in batches of a bounded number of entries so
that no call holds Redis for long; the "plain" mode reads whole entries with HMGET instead.
It carries `#!lua flags=no-writes` and is called with EVALSHA_RO/EVAL_RO (Redis 7.0+): Redis
itself refuses it any write, and an ACL user without write commands may run it.

Queue lists are never read by a script: a plain LINDEX costs Redis about 1.8 us per 1 KB tail,
the same read from Lua 7-10 us (the reply is copied into Lua, then searched), and a huge message
would be copied twice.
"""

from __future__ import annotations

import hashlib

# ARGV: 1 unacked hash key (prefixed), 2 delivery tags joined by "\n".
# Returns, per tag, the routing part of the entry: kombu stores `[message, exchange, routing_key]`
# as JSON, and the message is an object whose last `}, "` ends it (a quote inside a JSON string is
# always escaped), so `"exchange", "routing_key"]` follows. Only that leaves Redis, however big the
# message. An entry without that shape comes back whole if small ("" when the entry is gone).
UNACKED_TAILS_LUA = (
    "#!lua flags=no-writes\n"
    r"""local out = {}
local kind = redis.call("TYPE", ARGV[1])
kind = kind.ok or kind
if kind ~= "hash" and kind ~= "none" then return redis.error_reply("unacked key is a " .. kind) end
for tag in string.gmatch(ARGV[2], "[^\n]+") do
  local entry = redis.call("HGET", ARGV[1], tag)
  if not entry then
    out[#out + 1] = ""
  else
    local size = #entry
    local pos = size > 1024 and size - 1024 or 1
    local last = nil
    while true do
      local at = string.find(entry, '}, "', pos, true)
      if not at then break end
      last = at
      pos = at + 1
    end
    if last then
      out[#out + 1] = "[" .. string.sub(entry, last + 3)
    elseif size <= 65536 then
      out[#out + 1] = entry
    else
      out[#out + 1] = "?"
    end
  end
end
return out
"""
)
UNACKED_TAILS_SHA = hashlib.sha1(UNACKED_TAILS_LUA.encode()).hexdigest()
