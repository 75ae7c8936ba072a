// Store-only write load: THREADS threads call Submit (or SubmitAsync with WINDOW submits in
// flight per thread) until TOTAL runs are in, then prints submits/s and latency percentiles.
// For measuring the SQLite write path without HTTP in the way.
//
//   gpuq_store_submit_load <store-url> <threads> <total> [sync|async] [window]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/store.hpp"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s URL THREADS TOTAL [sync|async] [window]\n", argv[0]);
    return 2;
  }
  gpuq::SystemClock clock;
  auto opened = gpuq::store::OpenStore(argv[1], clock);
  if (!opened) {
    std::fprintf(stderr, "open: %s\n", opened.error().message.c_str());
    return 1;
  }
  gpuq::store::Store& store = *opened.value();
  int threads = std::atoi(argv[2]);
  int total = std::atoi(argv[3]);
  bool async = argc > 4 && std::string(argv[4]) == "async";
  int window = argc > 5 ? std::atoi(argv[5]) : 1;
  std::atomic<int> next{0};
  std::atomic<int> failed{0};
  using Clock = std::chrono::steady_clock;
  std::vector<std::vector<double>> latencies(threads);

  auto payload = gpuq::Json::parse(R"({"prompt":"hello","sleep_ms":0,"n":1})");
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto& lat = latencies[t];
      if (!async) {
        while (next.fetch_add(1) < total) {
          auto t0 = Clock::now();
          auto r = store.Submit(gpuq::store::NewRun{.type = "echo", .payload = payload});
          lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
          if (!r) failed.fetch_add(1);
        }
        return;
      }
      std::mutex mu;
      std::condition_variable cv;
      int in_flight = 0;
      while (next.fetch_add(1) < total) {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return in_flight < window; });
        ++in_flight;
        lock.unlock();
        auto t0 = Clock::now();
        store.SubmitAsync(gpuq::store::NewRun{.type = "echo", .payload = payload},
                          [&, t0](gpuq::Result<gpuq::store::Submitted> r) {
                            double ms =
                                std::chrono::duration<double, std::milli>(Clock::now() - t0)
                                    .count();
                            std::lock_guard lock(mu);
                            lat.push_back(ms);
                            if (!r) failed.fetch_add(1);
                            --in_flight;
                            cv.notify_one();
                          });
      }
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight == 0; });
    });
  }
  for (auto& th : pool) th.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all.empty() ? 0.0 : all[size_t(p * (all.size() - 1))]; };
  std::printf("%s threads=%d window=%d total=%d failed=%d submits/s=%.0f p50=%.2fms "
              "p99=%.2fms max=%.2fms\n",
              async ? "async" : "sync", threads, window, total, failed.load(), total / secs,
              pct(0.5), pct(0.99), pct(1.0));
  return failed.load() == 0 ? 0 : 1;
}
