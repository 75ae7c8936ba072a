#pragma once
// Standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /, '=' padding), for images and
// audio carried inside JSON (A1111's images, init_images).
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace gpuq {

// Any bytes -> padded base64 text, no line breaks.
std::string Base64Encode(std::string_view bytes);

// Padded base64 text -> the bytes. Strict: any character outside the alphabet (a "data:"
// prefix, whitespace, '-' or '_' of the URL-safe alphabet), a length that is not a multiple of
// 4, misplaced '=' or non-zero padding bits -> kInvalidArgument naming the offset. Callers
// strip prefixes such as "data:image/png;base64," themselves.
Result<std::string> Base64Decode(std::string_view text);

}  // namespace gpuq
