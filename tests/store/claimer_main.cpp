// A second process for StoreContract.ClaimIsExclusiveAcrossThreadsAndProcesses: opens the
// store at a URL, says it is ready, then claims and completes runs until none is left,
// writing each claimed id to a file. With "claim-run" it works as a GPU worker does
// (StoreContract.ClaimRunIsExclusiveAcrossProcesses): PendingRuns, then ClaimRun on each.
//
//   gpuq_store_claimer <store-url> <type> <max-runs> <ready-file> <ids-file> [claim-run]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

#include "store/store.hpp"

int main(int argc, char** argv) {
  if (argc != 6 && !(argc == 7 && std::string(argv[6]) == "claim-run")) {
    std::fprintf(stderr, "usage: %s URL TYPE MAX_RUNS READY_FILE IDS_FILE [claim-run]\n", argv[0]);
    return 2;
  }
  gpuq::SystemClock clock;
  auto store = gpuq::store::OpenStore(argv[1], clock);
  if (!store) {
    std::fprintf(stderr, "open: %s\n", store.error().message.c_str());
    return 1;
  }
  std::ofstream(argv[4]) << "ready\n";
  std::ofstream ids(argv[5]);
  gpuq::store::ClaimRequest request;
  request.worker = "child-" + std::to_string(getpid()) + "/cpu0";
  request.types = {argv[2]};
  request.max_runs = std::atoi(argv[3]);
  auto complete = [&](const gpuq::store::Lease& lease) {
    ids << lease.run.id << '\n';
    auto done = store.value()->Complete(lease.run.id, lease.token, gpuq::Json::object(), {});
    if (!done) {
      std::fprintf(stderr, "complete %s: %s\n", lease.run.id.c_str(), done.error().message.c_str());
    }
    return static_cast<bool>(done);
  };
  while (argc == 7) {
    auto pending = store.value()->PendingRuns(request.types, request.max_runs);
    if (!pending) {
      std::fprintf(stderr, "pending: %s\n", pending.error().message.c_str());
      return 1;
    }
    if (pending.value().empty()) break;
    for (const auto& run : pending.value()) {
      auto lease = store.value()->ClaimRun(run.id, request.worker, "child:0", request.lease_ttl);
      if (!lease) {
        std::fprintf(stderr, "claim %s: %s\n", run.id.c_str(), lease.error().message.c_str());
        return 1;
      }
      if (lease.value() && !complete(*lease.value())) return 1;
    }
  }
  while (argc == 6) {
    auto leases = store.value()->Claim(request);
    if (!leases) {
      std::fprintf(stderr, "claim: %s\n", leases.error().message.c_str());
      return 1;
    }
    if (leases.value().empty()) break;
    for (const auto& lease : leases.value()) {
      if (!complete(lease)) return 1;
    }
  }
  ids.flush();
  return ids ? 0 : 1;
}
