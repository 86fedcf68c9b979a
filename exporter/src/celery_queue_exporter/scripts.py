"""Read-only Lua scripts run inside Redis, so one scrape is one round trip whatever the queue count.

Both scripts carry `#!lua flags=no-writes` and are called with EVALSHA_RO/EVAL_RO (Redis 7.0+):
Redis itself refuses them any write, and an ACL user without write commands may run them.
Every key is built from arguments, so they serve any global_keyprefix, sep and priority steps;
kombu's fixed names (binding prefix, event and pidbox queues) come from redis_layout.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis

from celery_queue_exporter.redis_layout import BINDING_PREFIX, EVENT_QUEUE_PREFIX, PIDBOX_SUFFIX


def lua_string(text: str) -> str:
    """`text` as a Lua string literal: printable ASCII as is, every other byte as a decimal escape."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _read_only(body: str, **constants: str) -> str:
    """The script with its no-writes flag, and `constants` defined as Lua locals before `body`."""
    lines = ["#!lua flags=no-writes"]
    lines += [f"local {name} = {lua_string(value)}" for name, value in constants.items()]
    return "\n".join(lines) + "\n" + body


# ARGV: 1 key prefix, 2 sep, 3 priority steps "0,3,6,9", 4 known queues joined by "\n",
# 5 SCAN cursor, 6 SCAN count, 7 how many new queues may still be measured,
# 8 "1" to read the tails of non-empty lists,
# 9... known queues whose names hold a newline, one per argument (measured after those of ARGV[4]).
# Returns {next cursor, {{binding key, {members}}...}, new queues "\n"-joined,
#          lengths ","-joined (queue-major, -1 = not a list), tails}.
# The unacked index is not read here: a plain ZRANGE in the same pipeline costs Redis a tenth of
# what turning 100,000 entries into Lua strings does.
# Tails: "queue index (0-based) \t delivery tag \t x-published-at" for each non-empty list, all
# "\t"-joined.
SCRAPE_LUA = _read_only(
    r"""local prefix, sep = ARGV[1], ARGV[2]
local suffixes = {}
for step in string.gmatch(ARGV[3], "%d+") do
  if tonumber(step) == 0 then suffixes[#suffixes + 1] = "" else suffixes[#suffixes + 1] = sep .. step end
end

local queues, known = {}, {}
for q in string.gmatch(ARGV[4], "[^\n]+") do
  if not known[q] then known[q] = true; queues[#queues + 1] = q end
end
for i = 9, #ARGV do
  if not known[ARGV[i]] then known[ARGV[i]] = true; queues[#queues + 1] = ARGV[i] end
end

-- One SCAN step over the binding sets: discovery is spread over scrapes in a big database.
local pattern = string.gsub(prefix .. BINDING_PREFIX, "[%*%?%[%]\\]", "\\%0") .. "*"
local scan = redis.call("SCAN", ARGV[5], "MATCH", pattern, "COUNT", ARGV[6])
local bindings, new_queues = {}, {}
local room = tonumber(ARGV[7])
local seplen = #sep
for _, key in ipairs(scan[2]) do
  local members = redis.pcall("SMEMBERS", key)
  if type(members) ~= "table" or members.err then members = {} end
  bindings[#bindings + 1] = {key, members}
  for _, member in ipairs(members) do
    local a = string.find(member, sep, 1, true)
    local b = a and string.find(member, sep, a + seplen, true)
    if b then
      local q = string.sub(member, b + seplen)
      if q ~= "" and not known[q] and string.sub(q, 1, #EVENT_QUEUE_PREFIX) ~= EVENT_QUEUE_PREFIX
          and string.sub(q, -#PIDBOX_SUFFIX) ~= PIDBOX_SUFFIX and not string.find(q, "\n", 1, true) then
        known[q] = true
        new_queues[#new_queues + 1] = q
        if room > 0 then queues[#queues + 1] = q; room = room - 1 end
      end
    end
  end
end

local lengths, tails = {}, {}
local want_tails = ARGV[8] == "1"
local n, t = 0, 0
for qi, q in ipairs(queues) do
  for _, suffix in ipairs(suffixes) do
    local key = prefix .. q .. suffix
    local len = redis.pcall("LLEN", key)
    n = n + 1
    if type(len) ~= "number" then
      lengths[n] = -1
    else
      lengths[n] = len
      if len > 0 and want_tails then
        local msg = redis.call("LINDEX", key, -1)
        local size = #msg
        local tag, published = "", ""
        -- Properties come last in kombu's JSON, headers just before: look near the end first.
        local from = size > 4096 and size - 4096 or 1
        local _, e = string.find(msg, '"delivery_tag": "', from, true)
        if not e and from > 1 then _, e = string.find(msg, '"delivery_tag": "', 1, true) end
        if e then
          local close = string.find(msg, '"', e + 1, true)
          if close and close - e <= 200 then
            tag = string.sub(msg, e + 1, close - 1)
            if string.find(tag, "\t", 1, true) then tag = "" end
          end
        end
        from = size > 65536 and size - 65536 or 1
        local _, p = string.find(msg, '"x-published-at": ', from, true)
        if p then published = string.match(msg, "^[-+%d.eE]+", p + 1) or "" end
        tails[t + 1], tails[t + 2], tails[t + 3] = qi - 1, tag, published
        t = t + 3
      end
    end
  end
end

return {scan[1], bindings, table.concat(new_queues, "\n"), table.concat(lengths, ","), table.concat(tails, "\t")}
""",
    BINDING_PREFIX=BINDING_PREFIX,
    EVENT_QUEUE_PREFIX=EVENT_QUEUE_PREFIX,
    PIDBOX_SUFFIX=PIDBOX_SUFFIX,
)

# ARGV: 1 unacked hash key (prefixed), 2 delivery tags joined by "\n".
# Returns, per tag, the routing part of the entry: kombu stores `[message, exchange, routing_key]`
# as JSON, and the message is an object whose last `}, "` ends it (a quote inside a JSON string is
# always escaped), so `"exchange", "routing_key"]` follows. Only that leaves Redis, however big the
# message. An entry without that shape comes back whole if small ("" when the entry is gone).
UNACKED_TAILS_LUA = _read_only(
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


class ReadOnlyScript:
    """A Lua script run with EVALSHA_RO, loaded on first use with EVAL_RO (no SCRIPT LOAD needed)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def queue(self, pipe: redis.client.Pipeline, args: Sequence[Any]) -> None:
        """Add the call to a pipeline; on NoScriptError in its result, call `load_and_run`."""
        pipe.execute_command("EVALSHA_RO", self.sha, 0, *args)

    def load_and_run(self, client: redis.Redis, args: Sequence[Any]) -> Any:
        return client.execute_command("EVAL_RO", self.source, 0, *args)

    def __call__(self, client: redis.Redis, args: Sequence[Any]) -> tuple[Any, int]:
        """The script's reply and the round trips it took (2 when Redis did not have it cached)."""
        try:
            return client.execute_command("EVALSHA_RO", self.sha, 0, *args), 1
        except redis.exceptions.NoScriptError:
            return client.execute_command("EVAL_RO", self.source, 0, *args), 2


SCRAPE = ReadOnlyScript(SCRAPE_LUA)
UNACKED_TAILS = ReadOnlyScript(UNACKED_TAILS_LUA)
