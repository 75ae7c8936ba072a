#include "connectors/remotion/render_output.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <regex>

namespace gpuq::connectors {

namespace {

constexpr size_t kMaxKeptLine = 1000;  // longer error lines are cut

// Drops ANSI escape sequences (CSI "ESC [ ... letter" and two-byte ones): FORCE_COLOR may be set
// even though stdout is a pipe.
std::string StripAnsi(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\x1b') {
      out.push_back(line[i]);
      continue;
    }
    if (i + 1 < line.size() && line[i + 1] == '[') {
      i += 2;
      while (i < line.size() && !(line[i] >= '@' && line[i] <= '~')) ++i;
    } else {
      ++i;
    }
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool ContainsNoCase(std::string_view text, std::string_view word) {
  auto it = std::search(text.begin(), text.end(), word.begin(), word.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) ==
           std::tolower(static_cast<unsigned char>(b));
  });
  return it != text.end();
}

// Tolerant on purpose: words between the verb and the numbers ("Rendering frames 3/10"), and
// whatever follows them (", time remaining: 1m 2s").
const std::regex& BundleRegex() {
  static const std::regex re(R"(^Bundling\b\D*?(\d+(?:\.\d+)?)\s*%)");
  return re;
}
const std::regex& FramesRegex() {
  static const std::regex re(
      R"(^(Render(?:ed|ing)|Stitch(?:ed|ing)|Encod(?:ed|ing))\b[^0-9\n]*?(\d+)\s*/\s*(\d+))");
  return re;
}

// A thrown error as the CLI prints it: "Error: ...", "TypeError: ...", "Error  ...".
const std::regex& ErrorNameRegex() {
  static const std::regex re(R"(^[A-Za-z]*Error\b)");
  return re;
}

}  // namespace

std::string RenderOutput::ErrorLine() const {
  if (!thrown_line_.empty()) return thrown_line_;
  return !error_line_.empty() ? error_line_ : other_line_;
}

std::optional<Progress> RenderOutput::Feed(std::string_view raw) {
  std::string clean = StripAnsi(raw);
  std::string_view line = Trim(clean);
  if (line.empty()) return std::nullopt;
  std::string text(line);
  std::smatch match;
  std::string message;
  if (std::regex_search(text, match, BundleRegex())) {
    bundle_ = std::max(bundle_, std::clamp(std::stod(match[1].str()) / 100.0, 0.0, 1.0));
    message = fmt::format("bundling {}%", match[1].str());
  } else if (std::regex_search(text, match, FramesRegex())) {
    long done = std::stol(match[2].str().substr(0, 9));
    long total = std::stol(match[3].str().substr(0, 9));
    if (total <= 0) return std::nullopt;
    double fraction = std::clamp(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0);
    bundle_ = 1;
    // Current versions encode while they render, so a stitch line says nothing about rendering.
    bool render = match[1].str().starts_with("Render");
    double& stage = render ? render_ : stitch_;
    stage = std::max(stage, fraction);
    frames_ = static_cast<int>(total);
    if (done >= total) finished_ = true;
    message = fmt::format("{} {}/{}", render ? "rendering" : "stitching", done, total);
  } else if (text.starts_with("Getting compositions")) {
    bundle_ = 1;
    message = "getting compositions";
  } else {
    if (ContainsNoCase(text, "canceled due to missing packages") ||
        ContainsNoCase(text, "could not determine executable to run")) {
      npx_missing_package_ = true;
    }
    // Stack frames, the output summary and the CLI's help hints ("💡 Get help for this issue at
    // https://remotion.dev/docs/...") say nothing about what went wrong.
    if (text.starts_with("at ") || text.starts_with("+ ") || text.starts_with("\xF0\x9F\x92\xA1") ||
        text.starts_with("Get help")) {
      return std::nullopt;
    }
    if (text.size() > kMaxKeptLine) text.resize(kMaxKeptLine);
    if (std::regex_search(text, ErrorNameRegex())) {
      thrown_line_ = text;
    } else if (ContainsNoCase(text, "error")) {
      error_line_ = text;
    } else {
      other_line_ = text;
    }
    return std::nullopt;
  }
  double fraction = std::max(0.3 * bundle_ + 0.6 * render_ + 0.1 * stitch_, reported_);
  reported_ = fraction;
  return Progress{std::min(fraction, 1.0), std::move(message)};
}

}  // namespace gpuq::connectors
