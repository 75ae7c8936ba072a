#include "core/result.hpp"

namespace gpuq {

const char* ErrcName(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument: return "invalid_argument";
    case Errc::kMalformed: return "malformed";
    case Errc::kNotFound: return "not_found";
    case Errc::kConflict: return "conflict";
    case Errc::kResourceExhausted: return "too_large";
    case Errc::kUnauthenticated: return "unauthenticated";
    case Errc::kUnavailable: return "unavailable";
    case Errc::kTimeout: return "timeout";
    case Errc::kInternal: return "internal";
  }
  return "internal";
}

}  // namespace gpuq
