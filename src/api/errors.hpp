#pragma once
// Errc -> HTTP status, and the one error body shape: {"error": "<short_code>", "detail": "..."}.
#include <string_view>

#include "api/message.hpp"
#include "core/result.hpp"

namespace gpuq::api {

// The only mapping from Errc to an HTTP status (a switch without default).
int ToHttpStatus(Errc code);

// The wire word for an error: ErrcName, except kMalformed, which the API only produces for
// bodies, is "malformed_json".
std::string_view ErrorCode(Errc code);

// {"error": ErrorCode(e.code), "detail": e.message} with ToHttpStatus(e.code).
Response ToHttpResponse(const Error& error);

// Same, with a more specific short code ("path_outside_run_dir").
Response ToHttpResponse(const Error& error, std::string_view code);

// An error that is not an Errc (405 method_not_allowed, 400 for an unparseable request line).
Response ErrorResponse(int status, std::string_view code, std::string_view detail);

}  // namespace gpuq::api
