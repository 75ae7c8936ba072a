#include "api/auth.hpp"

namespace gpuq::api {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IEqualsAscii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] - 'A' + 'a') : b[i];
    if (x != y) return false;
  }
  return true;
}

}  // namespace

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Walk the whole of `a` whatever `b` is, so timing tells only the lengths.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(static_cast<unsigned char>(a[i]) ^ y);
  }
  return diff == 0;
}

bool Authorized(std::string_view token, std::string_view authorization, std::string_view cookie) {
  if (token.empty()) return true;
  bool ok = false;
  authorization = Trim(authorization);
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() > kBearer.size() &&
      IEqualsAscii(authorization.substr(0, kBearer.size()), kBearer)) {
    ok |= ConstantTimeEquals(token, Trim(authorization.substr(kBearer.size())));
  }
  // Cookie: "a=1; gpuq_token=xyz; b=2"
  size_t pos = 0;
  while (pos < cookie.size()) {
    size_t end = cookie.find(';', pos);
    if (end == std::string_view::npos) end = cookie.size();
    std::string_view pair = Trim(cookie.substr(pos, end - pos));
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == "gpuq_token") {
      std::string_view value = pair.substr(eq + 1);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      ok |= ConstantTimeEquals(token, value);
    }
    pos = end + 1;
  }
  return ok;
}

}  // namespace gpuq::api
