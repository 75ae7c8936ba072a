-- wrk script: POST /submit_task with a small fixed echo task (the baseline's submit.lua,
-- with gpuq's `echo` type in place of `noop`).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"task_type":"echo","priority":5,"payload":{"n":1}}'
