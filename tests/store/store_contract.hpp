#pragma once
// StoreContract: what every Store backend must do, as one value-parameterised suite.
// A backend instantiates it with a StoreBackend (see sqlite/sqlite_store_test.cpp).
#include <filesystem>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "core/clock.hpp"
#include "store/store.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::store::testing {

struct StoreBackend {
  std::string name;  // test-name suffix: "sqlite"
  // Opens the store whose data lives under `dir`; opening again reaches the same data.
  std::function<Result<std::unique_ptr<Store>>(const std::filesystem::path& dir, Clock& clock)>
      open;
  // The URL another process hands to OpenStore to reach the same data.
  std::function<std::string(const std::filesystem::path& dir)> url;
};

inline void PrintTo(const StoreBackend& backend, std::ostream* os) { *os << backend.name; }

class StoreContract : public ::testing::TestWithParam<StoreBackend> {
 protected:
  void SetUp() override;
  void Reopen();  // closes the store and opens it again on the same data

  // Submits and expects success; returns the id.
  std::string SubmitOk(NewRun run);
  std::string SubmitOk(const std::string& type, int priority = 50);
  // Claims and expects exactly one lease.
  Lease ClaimOne(const std::string& type, const std::string& worker = "host-a/cpu0",
                 Millis ttl = Millis(10'000));
  gpuq::Run GetOk(const std::string& id);

  gpuq::testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<Store> store_;
};

}  // namespace gpuq::store::testing
