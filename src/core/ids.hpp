#pragma once
#include <string>
#include <string_view>

namespace gpuq {

// A random UUIDv4 in canonical lowercase form. Thread-safe.
std::string NewUuid();
// True for the canonical 8-4-4-4-12 hex form (any version); ids are checked before any lookup
// so a malformed id is a 404 without touching the store.
bool IsUuid(std::string_view text);

}  // namespace gpuq
