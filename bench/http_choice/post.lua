wrk.method = "POST"
wrk.body = string.rep("1.0, ", 800)
wrk.headers["Content-Type"] = "application/json"
