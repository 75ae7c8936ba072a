#pragma once
// A service's own words for a failed request, for run errors.
#include <string>

namespace gpuq::connectors {

// The JSON body's "error" (a string, else its JSON text), else the body's first 200 bytes.
std::string ServiceErrorText(const std::string& body);

}  // namespace gpuq::connectors
