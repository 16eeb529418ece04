-- POST /orders, alternating a limit ask and a limit bid at one price (100.00), quantity 1:
-- every other order trades against the one before it. Two brokers, so no one trades with itself.
-- response() counts answers per wall-clock second; the runner prints that series.
local ask = '{"type":"limit","broker_id":"seller","document_number":"S1","side":"ask",' ..
            '"symbol":"AAPL","quantity":1,"price":100.00,"expires_at":"2030-01-01T00:00:00Z"}'
local bid = '{"type":"limit","broker_id":"buyer","document_number":"B1","side":"bid",' ..
            '"symbol":"AAPL","quantity":1,"price":100.00,"expires_at":"2030-01-01T00:00:00Z"}'
local headers = {["Content-Type"] = "application/json"}
local requests = {}
local turn = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  requests[0] = wrk.format("POST", "/orders", headers, ask)
  requests[1] = wrk.format("POST", "/orders", headers, bid)
  per_second = {}
end

function request()
  turn = 1 - turn
  return requests[turn]
end

function response(status, headers, body)
  local now = os.time()
  per_second[now] = (per_second[now] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("LATENCY p50=%.3f p99=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
  local merged = {}
  for _, thread in ipairs(threads) do
    for second, count in pairs(thread:get("per_second")) do
      merged[second] = (merged[second] or 0) + count
    end
  end
  local seconds = {}
  for second in pairs(merged) do table.insert(seconds, second) end
  table.sort(seconds)
  for _, second in ipairs(seconds) do
    io.write(string.format("SECOND %d %d\n", second, merged[second]))
  end
end
