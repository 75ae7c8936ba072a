#pragma once
// Bearer-token checks. Pure; safe from any thread.
#include <string_view>

namespace gpuq::api {

// True when `token` is empty (auth off), or when `authorization` is "Bearer <token>" or the
// Cookie header carries gpuq_token=<token>. Comparisons take time independent of where the
// candidate differs.
bool Authorized(std::string_view token, std::string_view authorization, std::string_view cookie);

// Compares in time that depends on the lengths only.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace gpuq::api
