#pragma once
// Method + path matching. Patterns are literal segments, `{name}` (one segment) and a final
// `{name*}` (the rest of the path, at least one segment). Built once, then read-only: Match is
// safe from any thread and allocates nothing.
#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/message.hpp"

namespace gpuq::api {

struct ApiContext;

// Captured path parameters, in pattern order. Views into the request path (not decoded).
struct PathParams {
  static constexpr int kMax = 4;
  std::array<std::string_view, kMax> values{};
  int size = 0;
  std::string_view operator[](int i) const { return values[static_cast<size_t>(i)]; }
};

using Handler = boost::asio::awaitable<Response> (*)(ApiContext& ctx, const Request& request,
                                                     PathParams params);

class Router {
 public:
  // Adds a route. The pattern must start with '/'.
  void Add(Method method, std::string_view pattern, Handler handler);

  struct Match {
    Handler handler = nullptr;  // set when method and path matched
    PathParams params;
    bool path_known = false;    // some route has this path (with another method when no handler)
    std::string_view allow;     // "GET" / "POST" / "GET, POST": methods for this path
  };
  Match Find(Method method, std::string_view path) const;

 private:
  struct Route {
    Method method;
    std::vector<std::string> segments;  // "{x}" captures one, "{x*}" the rest
    Handler handler;
    std::string allow;  // filled by Add for every route of the same pattern
  };
  static bool Matches(const Route& route, std::string_view path, PathParams& params);
  std::vector<Route> routes_;
};

// The value of query parameter `name`, percent-decoded ('+' is a space); nullopt when absent.
std::optional<std::string> QueryParam(std::string_view query, std::string_view name);

// Percent-decodes a path segment or query value. nullopt on a bad escape or a NUL byte.
std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space);

std::string_view MethodName(Method method);

}  // namespace gpuq::api
