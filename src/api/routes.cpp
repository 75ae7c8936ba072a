#include "api/routes.hpp"

#include <fmt/format.h>

#include "api/errors.hpp"
#include "api/run_json.hpp"
#include "core/ids.hpp"

namespace gpuq::api {

Router AllRoutes() {
  Router router;
  AddTaskRoutes(router);
  AddRunRoutes(router);
  AddFileRoutes(router);
  AddMetaRoutes(router);
  AddGpuRoutes(router);
  return router;
}

std::string DumpJson(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Response RunResponse(const Run& run) {
  Response response;
  response.body.reserve(640 + run.id.size() * 2);
  AppendRunJson(run, response.body);
  return response;
}

Response UnknownRun(std::string_view id) {
  // The id may be any bytes a client sent: keep the detail short and printable.
  std::string shown(id.substr(0, 64));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return ErrorResponse(404, "not_found", fmt::format("no run with id \"{}\"", shown));
}

Result<Run> GetRun(ApiContext& ctx, std::string_view id) {
  if (!IsUuid(id)) return Error{Errc::kNotFound, "not a run id"};
  return ctx.store.Get(id);
}

Response RunErrorResponse(std::string_view id, const Error& error) {
  return error.code == Errc::kNotFound ? UnknownRun(id) : ToHttpResponse(error);
}

}  // namespace gpuq::api
