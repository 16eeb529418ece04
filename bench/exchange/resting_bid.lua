-- POST /orders: a limit bid far below any ask, so it always rests and never trades.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"limit","broker_id":"bench","document_number":"B1","side":"bid",' ..
           '"symbol":"AAPL","quantity":1,"price":1.00,"expires_at":"2030-01-01T00:00:00Z"}'

-- Print p50/p99 in milliseconds in a form the runner parses.
done = function(summary, latency, requests)
  io.write(string.format("LATENCY p50=%.3f p99=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
