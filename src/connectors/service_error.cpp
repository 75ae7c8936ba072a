#include "connectors/service_error.hpp"

#include <nlohmann/json.hpp>

namespace gpuq::connectors {

std::string ServiceErrorText(const std::string& body) {
  constexpr size_t kExcerpt = 200;
  auto json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_object()) {
    if (auto it = json.find("error"); it != json.end()) {
      return it->is_string() ? it->get<std::string>() : it->dump();
    }
  }
  if (body.size() <= kExcerpt) return body;
  return body.substr(0, kExcerpt) + "...";
}

}  // namespace gpuq::connectors
