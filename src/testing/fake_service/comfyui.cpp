#include "testing/fake_service/fake_server.hpp"

namespace gpuq::fake {

// Not written yet: MakePersonality reports that this personality is not built.
std::unique_ptr<Personality> MakeComfyUi(const Options& /*options*/) { return nullptr; }

}  // namespace gpuq::fake
