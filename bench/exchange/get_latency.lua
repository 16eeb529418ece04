-- GET scenarios (book, balance): the URL is given on the command line; no body.
-- Print p50/p99 in milliseconds in a form the runner parses.
done = function(summary, latency, requests)
  io.write(string.format("LATENCY p50=%.3f p99=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
