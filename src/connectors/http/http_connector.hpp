#pragma once
// `http`: POSTs the run's payload as JSON to the service the task type is bound to, at
// ctx.service_url + the task type's `endpoint` (a template filled as text from the payload's
// top-level keys and "run_id"). Until the protocol connectors exist, this drives any service
// that takes a JSON POST (the demo's fake services among them).
//
// Outcome: a 2xx reply -> result = its JSON body (a body that is not JSON -> {"body": text}).
// Errors: empty ctx.service_url or an endpoint that does not fill -> kInvalidArgument; a
// refused or reset connection -> kUnavailable (retried: the service may be restarting); 502,
// 503, 504 -> kUnavailable "service replied 503: ..."; any other status -> kInvalidArgument
// "service replied <status>: <the body's "error" string, else its first 200 characters>"; no
// reply within the run's timeout -> kTimeout; ctx.stop -> kUnavailable "http request stopped",
// promptly (the request's socket is shut down from the stop callback). One line per request
// goes to the attempt's log. Thread-safe: one instance serves every worker.
#include "connectors/connector.hpp"

namespace gpuq::connectors {

class HttpConnector final : public Connector {
 public:
  // Any JSON object, as long as the task type's endpoint fills from it.
  Result<void> Validate(const TaskType& type, const Json& payload) const override;
  Result<Outcome> Execute(RunContext& ctx) override;
};

}  // namespace gpuq::connectors
