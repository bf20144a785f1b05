-- wrk script for bench/distribution.py: simulated list operators polling GET /lists/<type>
-- with a conditional GET (If-None-Match: the ETag of the version each one holds).
--
-- The operators are split between wrk's threads; each thread polls its operators in turn, each
-- operator the three list types. A "round" is one poll of every (operator, type) of the thread.
-- At the start of each round a fraction JTCA_BENCH_NEW of the pairs are drawn to hold the
-- previous version's ETag (a new version came out since they last polled: the server answers
-- 200 with the list); the others hold the current ETag (304, no body). So every round sees the
-- same share of 200s, as a population of operators does between two publications.
--
-- Environment: JTCA_BENCH_OPERATORS, JTCA_BENCH_NEW, JTCA_BENCH_THREADS,
-- JTCA_BENCH_ETAG_<n> / JTCA_BENCH_OLD_<n> (current / previous ETag of type n = 1..3),
-- JTCA_BENCH_HOST (the Host header).
-- done() prints one line: "JTCA-WRK key=value ..." that bench/distribution.py parses.

local types = { "issuer-whitelist", "city-list", "ca-key-list" }
local operators = tonumber(os.getenv("JTCA_BENCH_OPERATORS") or "10000")
local new_share = tonumber(os.getenv("JTCA_BENCH_NEW") or "0.05")
local nthreads = tonumber(os.getenv("JTCA_BENCH_THREADS") or "1")
local host = os.getenv("JTCA_BENCH_HOST") or "127.0.0.1"

local current, previous, paths = {}, {}, {}
for n = 1, #types do
   current[n] = os.getenv("JTCA_BENCH_ETAG_" .. n)
   previous[n] = os.getenv("JTCA_BENCH_OLD_" .. n)
   paths[n] = "/lists/" .. types[n]
end

local threads = {}
local counter = 0

function setup(thread)
   thread:set("index", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local mine, slot, pairs_count, held
got200, got304, other = 0, 0, 0  -- globals: done() reads them with thread:get

local function new_round()
   for k = 1, pairs_count do
      held[k] = (math.random() < new_share)
   end
end

function init(args)
   -- this thread's operators: index, index + nthreads, ...
   mine = 0
   for op = index, operators - 1, nthreads do
      mine = mine + 1
   end
   pairs_count = mine * #types
   held = {}
   math.randomseed(1000 + index)
   new_round()
   slot = 0
end

function request()
   if slot >= pairs_count then
      slot = 0
      new_round()
   end
   slot = slot + 1
   local n = (slot - 1) % #types + 1
   local tag = held[slot] and previous[n] or current[n]
   return wrk.format("GET", paths[n], { ["Host"] = host, ["If-None-Match"] = tag })
end

function response(status, headers, body)
   if status == 304 then
      got304 = got304 + 1
   elseif status == 200 then
      got200 = got200 + 1
   else
      other = other + 1
   end
end

function done(summary, latency, requests)
   local n200, n304, nother = 0, 0, 0
   for _, thread in ipairs(threads) do
      n200 = n200 + thread:get("got200")
      n304 = n304 + thread:get("got304")
      nother = nother + thread:get("other")
   end
   local e = summary.errors
   io.write(string.format(
      "JTCA-WRK duration_us=%d requests=%d n200=%d n304=%d other=%d "
         .. "p50_us=%d p99_us=%d max_us=%d connect_errors=%d read_errors=%d "
         .. "write_errors=%d timeouts=%d\n",
      summary.duration, summary.requests, n200, n304, nother,
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.timeout))
end
