#pragma once
// Errors are values: every function that can fail returns Result<T>.
#include <string>

#include <boost/outcome/result.hpp>
#include <boost/outcome/success_failure.hpp>
#include <boost/outcome/try.hpp>

namespace gpuq {

// The closed set of failure kinds. Each is mapped outward exactly once: api::ToHttpStatus,
// cli::ToExitCode. Add a value and the compiler warns at every switch without default.
enum class Errc {
  kInvalidArgument,    // 422: well-formed but invalid input
  kMalformed,          // 400: input that does not parse (JSON, query string)
  kNotFound,           // 404
  kConflict,           // 409: a transition that is not allowed, a stale fencing token
  kResourceExhausted,  // 413 on the wire; no room (VRAM, body size)
  kUnauthenticated,    // 401
  kUnavailable,        // 503: a dependency is down
  kTimeout,
  kInternal,
};

struct Error {
  Errc code;
  std::string message;  // for people and logs, never parsed
};

// Short machine-readable word for an Errc, used as the `error` field on the wire.
const char* ErrcName(Errc code);

template <class T>
using Result = boost::outcome_v2::result<T, Error, boost::outcome_v2::policy::terminate>;

inline auto Ok() { return boost::outcome_v2::success(); }  // for Result<void>

}  // namespace gpuq
