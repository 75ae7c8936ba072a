#include "api/errors.hpp"

#include <nlohmann/json.hpp>

namespace gpuq::api {

int ToHttpStatus(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument: return 422;
    case Errc::kMalformed: return 400;
    case Errc::kNotFound: return 404;
    case Errc::kConflict: return 409;
    case Errc::kResourceExhausted: return 413;
    case Errc::kUnauthenticated: return 401;
    case Errc::kUnavailable: return 503;
    case Errc::kTimeout: return 504;
    case Errc::kInternal: return 500;
  }
  return 500;  // not reached: every enumerator returns above
}

std::string_view ErrorCode(Errc code) {
  if (code == Errc::kMalformed) return "malformed_json";
  return ErrcName(code);
}

Response ErrorResponse(int status, std::string_view code, std::string_view detail) {
  nlohmann::json body = {{"error", code}, {"detail", detail}};
  // Details may quote client input: replace invalid UTF-8 rather than throw.
  return JsonResponse(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), status);
}

Response ToHttpResponse(const Error& error, std::string_view code) {
  return ErrorResponse(ToHttpStatus(error.code), code, error.message);
}

Response ToHttpResponse(const Error& error) {
  return ToHttpResponse(error, ErrorCode(error.code));
}

}  // namespace gpuq::api
