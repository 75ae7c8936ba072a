#include "http/multipart.hpp"

#include <fmt/format.h>

#include <random>

namespace gpuq::http {

namespace {

std::string Boundary(const std::vector<FormPart>& parts) {
  std::random_device seed;
  std::mt19937_64 random(seed());
  while (true) {
    std::string boundary = fmt::format("gpuq-{:016x}{:016x}", random(), random());
    bool unique = true;
    for (const auto& part : parts) unique = unique && part.value.find(boundary) == std::string::npos;
    if (unique) return boundary;
  }
}

// Quotes a name or filename for Content-Disposition: no CR/LF, quotes and backslashes escaped.
std::string Quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\r' || c == '\n') continue;
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

FormBody EncodeForm(const std::vector<FormPart>& parts) {
  std::string boundary = Boundary(parts);
  FormBody form{.content_type = "multipart/form-data; boundary=" + boundary, .body = {}};
  for (const auto& part : parts) {
    form.body += "--" + boundary + "\r\n";
    form.body += "Content-Disposition: form-data; name=" + Quoted(part.name);
    if (!part.filename.empty()) {
      form.body += "; filename=" + Quoted(part.filename) + "\r\nContent-Type: " +
                   (part.content_type.empty() ? "application/octet-stream" : part.content_type);
    }
    form.body += "\r\n\r\n" + part.value + "\r\n";
  }
  form.body += "--" + boundary + "--\r\n";
  return form;
}

}  // namespace gpuq::http
