#include "core/placeholder.hpp"

#include <fmt/format.h>

#include <cctype>
#include <optional>

namespace gpuq {

namespace {

// One piece of a parsed template string: literal text or a placeholder name.
struct Piece {
  bool is_placeholder = false;
  std::string text;  // literal text, or the placeholder's name
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool ValidName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c == '{' || c == '}') return false;
  }
  // "a..b", ".a" and "a." name no path.
  if (name.front() == '.' || name.back() == '.') return false;
  return name.find("..") == std::string_view::npos;
}

// Splits `text` into literal and placeholder pieces. Adjacent literals are merged.
Result<std::vector<Piece>> Parse(std::string_view text) {
  std::vector<Piece> pieces;
  auto literal = [&pieces](std::string_view s) {
    if (pieces.empty() || pieces.back().is_placeholder) pieces.push_back(Piece{false, {}});
    pieces.back().text.append(s);
  };
  size_t i = 0;
  while (i < text.size()) {
    std::string_view rest = text.substr(i);
    if (rest.starts_with("{{{{")) {
      literal("{{");
      i += 4;
    } else if (rest.starts_with("}}}}")) {
      literal("}}");
      i += 4;
    } else if (rest.starts_with("{{")) {
      size_t end = text.find("}}", i + 2);
      if (end == std::string_view::npos) {
        return Error{Errc::kInvalidArgument,
                     fmt::format("unterminated placeholder at offset {} in \"{}\"", i, text)};
      }
      std::string_view name = Trim(text.substr(i + 2, end - i - 2));
      if (!ValidName(name)) {
        return Error{Errc::kInvalidArgument,
                     fmt::format("invalid placeholder name \"{}\" in \"{}\"",
                                 text.substr(i + 2, end - i - 2), text)};
      }
      pieces.push_back(Piece{true, std::string(name)});
      i = end + 2;
    } else {
      literal(rest.substr(0, 1));
      i += 1;
    }
  }
  return pieces;
}

Result<const nlohmann::json*> Resolve(const std::string& name, const nlohmann::json& values) {
  const nlohmann::json* value = LookupPlaceholder(values, name);
  if (value == nullptr) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("missing value for placeholder {{{{{}}}}}", name)};
  }
  return value;
}

std::string AsText(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// Fills pieces as text; `pieces` came from Parse.
Result<std::string> Render(const std::vector<Piece>& pieces, const nlohmann::json& values) {
  std::string out;
  for (const Piece& piece : pieces) {
    if (!piece.is_placeholder) {
      out += piece.text;
      continue;
    }
    BOOST_OUTCOME_TRY(auto value, Resolve(piece.text, values));
    out += AsText(*value);
  }
  return out;
}

}  // namespace

const nlohmann::json* LookupPlaceholder(const nlohmann::json& values, std::string_view name) {
  if (name.empty()) return nullptr;
  // A top-level key that itself contains dots wins over the path reading.
  if (values.is_object()) {
    auto whole = values.find(std::string(name));
    if (whole != values.end()) return &*whole;
  }
  const nlohmann::json* node = &values;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view step =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (step.empty()) return nullptr;
    if (node->is_object()) {
      auto it = node->find(std::string(step));
      if (it == node->end()) return nullptr;
      node = &*it;
    } else if (node->is_array()) {
      size_t index = 0;
      for (char c : step) {
        if (c < '0' || c > '9') return nullptr;
        index = index * 10 + static_cast<size_t>(c - '0');
        if (index > node->size()) return nullptr;  // also stops overflow
      }
      if (index >= node->size()) return nullptr;
      node = &(*node)[index];
    } else {
      return nullptr;
    }
    if (dot == std::string_view::npos) return node;
    start = dot + 1;
  }
}

Result<std::vector<std::string>> PlaceholderNames(std::string_view text) {
  BOOST_OUTCOME_TRY(auto pieces, Parse(text));
  std::vector<std::string> names;
  for (Piece& piece : pieces) {
    if (piece.is_placeholder) names.push_back(std::move(piece.text));
  }
  return names;
}

Result<nlohmann::json> FillString(std::string_view text, const nlohmann::json& values) {
  BOOST_OUTCOME_TRY(auto pieces, Parse(text));
  if (pieces.size() == 1 && pieces.front().is_placeholder) {
    BOOST_OUTCOME_TRY(auto value, Resolve(pieces.front().text, values));
    return *value;
  }
  BOOST_OUTCOME_TRY(auto out, Render(pieces, values));
  return nlohmann::json(std::move(out));
}

Result<nlohmann::json> FillTemplate(const nlohmann::json& tmpl, const nlohmann::json& values) {
  if (tmpl.is_string()) return FillString(tmpl.get_ref<const std::string&>(), values);
  if (tmpl.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (auto it = tmpl.begin(); it != tmpl.end(); ++it) {
      BOOST_OUTCOME_TRY(auto filled, FillTemplate(it.value(), values));
      out[it.key()] = std::move(filled);
    }
    return out;
  }
  if (tmpl.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : tmpl) {
      BOOST_OUTCOME_TRY(auto filled, FillTemplate(item, values));
      out.push_back(std::move(filled));
    }
    return out;
  }
  return tmpl;
}

Result<std::string> FillText(std::string_view text, const nlohmann::json& values) {
  BOOST_OUTCOME_TRY(auto pieces, Parse(text));
  return Render(pieces, values);
}

}  // namespace gpuq
