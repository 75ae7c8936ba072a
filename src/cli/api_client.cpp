#include "cli/api_client.hpp"

#include <fmt/format.h>

namespace gpuq::cli {

Error ErrorFromResponse(const http::Response& response) {
  Errc code = Errc::kInternal;
  switch (response.status) {
    case 400: code = Errc::kMalformed; break;
    case 401: code = Errc::kUnauthenticated; break;
    case 404: code = Errc::kNotFound; break;
    case 409: code = Errc::kConflict; break;
    case 413: code = Errc::kResourceExhausted; break;
    case 422: code = Errc::kInvalidArgument; break;
    case 503: code = Errc::kUnavailable; break;
    case 504: code = Errc::kTimeout; break;
    default: break;
  }
  std::string detail;
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_object() && body.contains("detail") && body["detail"].is_string()) {
    detail = body["detail"].get<std::string>();
  } else {
    detail = response.body.substr(0, 200);
  }
  if (response.status == 401 && detail.empty()) detail = "the server wants a token";
  return Error{code, fmt::format("{} (HTTP {})", detail, response.status)};
}

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

Result<ApiClient> ApiClient::Connect(const GlobalOptions& options,
                                     std::chrono::milliseconds timeout) {
  auto endpoint = http::ParseServerUrl(options.server);
  if (!endpoint) return endpoint.error();
  auto client = std::make_unique<http::Client>(endpoint.value(), timeout);
  if (!options.token.empty()) client->SetHeader("Authorization", "Bearer " + options.token);
  return ApiClient(std::move(client));
}

Result<http::Response> ApiClient::Check(Result<http::Response> response) {
  if (!response) return response.error();
  if (response.value().status < 200 || response.value().status >= 300) {
    return ErrorFromResponse(response.value());
  }
  return response;
}

Result<nlohmann::json> ApiClient::GetJson(std::string_view target) {
  BOOST_OUTCOME_TRY(auto response, Check(client_->Get(target)));
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_discarded()) {
    return Error{Errc::kInternal, fmt::format("the server sent malformed JSON for {}", target)};
  }
  return body;
}

Result<nlohmann::json> ApiClient::PostJson(std::string_view target, const nlohmann::json& body,
                                           std::string_view idempotency_key) {
  std::map<std::string, std::string> headers;
  if (!idempotency_key.empty()) headers["Idempotency-Key"] = std::string(idempotency_key);
  BOOST_OUTCOME_TRY(auto response, Check(client_->Request("POST", target, body.dump(),
                                                          "application/json", headers)));
  auto parsed = nlohmann::json::parse(response.body, nullptr, false);
  if (parsed.is_discarded()) {
    return Error{Errc::kInternal, fmt::format("the server sent malformed JSON for {}", target)};
  }
  return parsed;
}

Result<std::string> ApiClient::GetRaw(std::string_view target) {
  BOOST_OUTCOME_TRY(auto response, Check(client_->Get(target)));
  return std::move(response.body);
}

}  // namespace gpuq::cli
