-- wrk script for benches/api_load.sh: one GET path (WRK_PATH), and at the end one machine-
-- readable line with latency percentiles (ms), requests/s, and counts of errors and non-2xx.
local path = os.getenv("WRK_PATH") or "/"
local name = os.getenv("WRK_NAME") or path

request = function()
  return wrk.format("GET", path)
end

done = function(summary, latency, requests)
  local s = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT\t%s\tp50_ms=%.2f\tp90_ms=%.2f\tp99_ms=%.2f\tmax_ms=%.2f\trps=%.1f\trequests=%d\tnon2xx=%d\terrors=%d\n",
    name, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.requests / s, summary.requests,
    e.status, e.connect + e.read + e.write + e.timeout))
end
