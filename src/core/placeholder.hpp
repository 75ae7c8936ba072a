#pragma once
// DESIGN.md's one placeholder grammar, used for command argv, workflow templates and child
// payloads: `{{name}}` (dotted paths allowed: `{{parent.outputs.KEY}}`).
//  - a JSON string that is exactly one placeholder becomes the value with its JSON type;
//  - inside a longer string the value becomes text (strings as-is, other JSON as its dump);
//  - `{{{{` and `}}}}` are literal `{{` and `}}`;
//  - an unknown or missing name is an error (kInvalidArgument naming it).
// Pure functions.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace gpuq {

// Looks up `name` in `values`: "a.b.c" walks objects (and array indexes given as numbers).
// Returns nullptr when a step is missing.
const nlohmann::json* LookupPlaceholder(const nlohmann::json& values, std::string_view name);

// Every placeholder name that appears in `text`, in order of appearance (duplicates kept).
// kInvalidArgument on an unterminated `{{`.
Result<std::vector<std::string>> PlaceholderNames(std::string_view text);

// Fills one string. Returns JSON: the typed value when `text` is exactly one placeholder,
// otherwise a string.
Result<nlohmann::json> FillString(std::string_view text, const nlohmann::json& values);

// Fills every string inside `tmpl` (object values and array items, recursively; keys untouched).
Result<nlohmann::json> FillTemplate(const nlohmann::json& tmpl, const nlohmann::json& values);

// Fills a string as text only (for argv elements and env values): a non-string value is
// rendered as its JSON dump, strings as-is.
Result<std::string> FillText(std::string_view text, const nlohmann::json& values);

}  // namespace gpuq
