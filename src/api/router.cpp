#include "api/router.hpp"

namespace gpuq::api {
namespace {

bool IsCapture(std::string_view segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}
bool IsRest(std::string_view segment) { return IsCapture(segment) && segment[segment.size() - 2] == '*'; }

// Next '/'-separated segment of `path` starting at `pos` (which points after a '/').
std::string_view NextSegment(std::string_view path, size_t& pos) {
  size_t end = path.find('/', pos);
  if (end == std::string_view::npos) end = path.size();
  std::string_view segment = path.substr(pos, end - pos);
  pos = end + 1;
  return segment;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view MethodName(Method method) {
  switch (method) {
    case Method::kGet: return "GET";
    case Method::kPost: return "POST";
    case Method::kOther: return "OTHER";
  }
  return "OTHER";
}

void Router::Add(Method method, std::string_view pattern, Handler handler) {
  Route route{method, {}, handler, {}};
  size_t pos = 1;
  while (pos <= pattern.size()) route.segments.emplace_back(NextSegment(pattern, pos));
  routes_.push_back(std::move(route));
  // Recompute Allow for every route sharing this pattern.
  std::string allow;
  for (const Route& r : routes_) {
    if (r.segments != routes_.back().segments) continue;
    if (!allow.empty()) allow += ", ";
    allow += MethodName(r.method);
  }
  for (Route& r : routes_) {
    if (r.segments == routes_.back().segments) r.allow = allow;
  }
}

bool Router::Matches(const Route& route, std::string_view path, PathParams& params) {
  params.size = 0;
  if (path.empty() || path.front() != '/') return false;
  size_t pos = 1;
  for (size_t i = 0; i < route.segments.size(); ++i) {
    const std::string& want = route.segments[i];
    if (pos > path.size()) return false;  // path ran out
    if (IsRest(want)) {
      std::string_view rest = path.substr(pos);
      if (rest.empty() || params.size == PathParams::kMax) return false;
      params.values[static_cast<size_t>(params.size++)] = rest;
      return true;
    }
    std::string_view got = NextSegment(path, pos);
    if (IsCapture(want)) {
      if (got.empty() || params.size == PathParams::kMax) return false;
      params.values[static_cast<size_t>(params.size++)] = got;
    } else if (got != want) {
      return false;
    }
  }
  return pos > path.size();  // every path segment consumed
}

Router::Match Router::Find(Method method, std::string_view path) const {
  Match match;
  PathParams params;
  for (const Route& route : routes_) {
    if (!Matches(route, path, params)) continue;
    match.path_known = true;
    match.allow = route.allow;
    if (route.method == method) {
      match.handler = route.handler;
      match.params = params;
      return match;
    }
  }
  return match;
}

std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int hi = HexValue(text[i + 1]);
      int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (c == '\0') return std::nullopt;
    out.push_back(c);
  }
  return out;
}

std::optional<std::string> QueryParam(std::string_view query, std::string_view name) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t end = query.find('&', pos);
    if (end == std::string_view::npos) end = query.size();
    std::string_view pair = query.substr(pos, end - pos);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (key == name) {
      std::string_view value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      auto decoded = PercentDecode(value, true);
      return decoded ? std::move(*decoded) : std::string(value);  // bad escape: validate raw
    }
    pos = end + 1;
  }
  return std::nullopt;
}

}  // namespace gpuq::api
